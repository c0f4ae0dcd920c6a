#include "fleet/cache.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"

/* Makes path with mode, or sets the mode of the one there when is_ours
 * (an operator's existing cache directory keeps its own). */
static enum tg_status make_dir(const char *path, mode_t mode, bool is_ours, char *err,
                               size_t err_len)
{
    if (mkdir(path, mode) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (!is_ours || chmod(path, mode) == 0))
            return TG_OK;
        snprintf(err, err_len, "%s: not a directory", path);
        return TG_E_CONFIG;
    }
    snprintf(err, err_len, "%s: cannot create: %s", path, strerror(errno));
    return TG_E_CONFIG;
}

enum tg_status fleet_cache_init(const char *dir, char *err, size_t err_len)
{
    /* Workers that dropped privileges read the CRLs and allow files under
     * files/ by name (they watch them): the way there is searchable, not
     * listable; keys in it are 0600, the other files 0644. */
    static const struct {
        const char *name;
        mode_t mode;
    } sub[] = {{"revs", 0700}, {"blobs", 0700}, {"files", 0711}};
    char path[4096];
    if (make_dir(dir, 0711, false, err, err_len) != TG_OK)
        return TG_E_CONFIG;
    for (size_t i = 0; i < TG_ARRAY_LEN(sub); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, sub[i].name);
        if (make_dir(path, sub[i].mode, true, err, err_len) != TG_OK)
            return TG_E_CONFIG;
    }
    return TG_OK;
}

static void blob_path(char *dst, size_t len, const char *dir, const char *sha)
{
    snprintf(dst, len, "%s/blobs/%s", dir, sha);
}

/* files/H-NAME: H names the path (16 hex digits of its SHA-256), NAME is
 * its last component, kept to safe characters, for whoever looks. */
static void stable_path(char *dst, size_t len, const char *dir, const char *path)
{
    char h[65], name[65];
    fleet_sha256_hex(path, strlen(path), h);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = 0;
    for (; *base && n < sizeof(name) - 1; base++) {
        char ch = *base;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        name[n++] = ok ? ch : '_';
    }
    name[n] = '\0';
    snprintf(dst, len, "%s/files/%.16s-%s", dir, h, name);
}

static void rev_path(char *dst, size_t len, const char *dir, int64_t rev)
{
    snprintf(dst, len, "%s/revs/%" PRId64 ".json", dir, rev);
}

static bool blob_ok(const char *path, const char *sha)
{
    char *data = NULL, err[256], hex[65];
    size_t len = 0;
    if (tg_read_file(path, ETCD_VALUE_MAX, &data, &len, err, sizeof(err)) != TG_OK)
        return false;
    fleet_sha256_hex(data, len, hex);
    explicit_bzero(data, len);
    free(data);
    return strcmp(hex, sha) == 0;
}

static enum tg_status fetch_blob(const char *dir, struct etcd *e, const char *prefix,
                                 const struct fleet_file *f, const struct fleet_secret *secret,
                                 char *err, size_t err_len)
{
    char path[4096], key[512];
    blob_path(path, sizeof(path), dir, f->sha);
    if (blob_ok(path, f->sha))
        return TG_OK;
    snprintf(key, sizeof(key), "%s/files/%s", prefix, f->sha);
    struct etcd_kvs kvs;
    if (etcd_get(e, key, &kvs) != TG_OK) {
        snprintf(err, err_len, "%s: %s", key, etcd_error(e));
        return TG_E_CLOSED;
    }
    enum tg_status st = TG_E_PROTO;
    uint8_t *data = kvs.n == 1 ? kvs.v[0].value : NULL;
    size_t len = kvs.n == 1 ? kvs.v[0].len : 0;
    uint8_t *opened = NULL;
    if (data == NULL || kvs.v[0].is_too_large) {
        snprintf(err, err_len, "%s: %s (for %s)", key,
                 data == NULL ? "missing from etcd" : "larger than 1 MiB", f->path);
        goto out;
    }
    if (f->is_secret) {
        if (secret == NULL) {
            snprintf(err, err_len, "%s is pushed sealed: this node needs the fleet secret file",
                     f->path);
            goto out;
        }
        if (fleet_open(secret, key, (const char *)data, len, &opened, &len, err, err_len) != TG_OK)
            goto out;
        data = opened;
    }
    char hex[65];
    fleet_sha256_hex(data, len, hex);
    if (strcmp(hex, f->sha) != 0 || len != f->size) {
        snprintf(err, err_len, "%s: contents do not match their digest (for %s)", key, f->path);
        goto out;
    }
    st = tg_write_file_atomic(path, data, len, 0600, err, err_len);
out:
    if (opened != NULL) {
        explicit_bzero(opened, len);
        free(opened);
    }
    etcd_kvs_free(&kvs);
    return st;
}

enum tg_status fleet_cache_fetch(const char *dir, struct etcd *e, const char *prefix, int64_t rev,
                                 const char *sha, const struct fleet_secret *secret,
                                 struct fleet_rev *out, char *err, size_t err_len)
{
    /* The cached copy, unless etcd's revision of that number is another
     * (etcd restored from a backup, then pushed to). */
    if (fleet_cache_read(dir, rev, out, err, err_len) == TG_OK) {
        if (strcmp(out->sha, sha) == 0)
            return TG_OK;
        fleet_rev_free(out);
    }
    char key[512], path[4096];
    fleet_key_rev(key, sizeof(key), prefix, rev);
    struct etcd_kvs kvs;
    if (etcd_get(e, key, &kvs) != TG_OK) {
        snprintf(err, err_len, "%s", etcd_error(e));
        return TG_E_CLOSED;
    }
    if (kvs.n != 1 || kvs.v[0].is_too_large) {
        snprintf(err, err_len, "%s: %s", key,
                 kvs.n != 1 ? "missing from etcd" : "larger than 1 MiB");
        etcd_kvs_free(&kvs);
        return TG_E_PROTO;
    }
    char why[256];
    enum tg_status st =
        fleet_rev_decode((const char *)kvs.v[0].value, kvs.v[0].len, out, why, sizeof(why));
    if (st != TG_OK) {
        snprintf(err, err_len, "%s: %s", key, why);
    } else if (out->rev != rev) {
        snprintf(err, err_len, "%s: holds revision %" PRId64, key, out->rev);
        st = TG_E_PROTO;
    } else if (strcmp(out->sha, sha) != 0) {
        snprintf(err, err_len, "%s: sha256 %.12s, not the head's %.12s", key, out->sha, sha);
        st = TG_E_PROTO;
    }
    for (size_t i = 0; st == TG_OK && i < out->n_files; i++)
        st = fetch_blob(dir, e, prefix, &out->files[i], secret, err, err_len);
    rev_path(path, sizeof(path), dir, rev);
    if (st == TG_OK)
        st = tg_write_file_atomic(path, kvs.v[0].value, kvs.v[0].len, 0600, err, err_len);
    if (st != TG_OK)
        fleet_rev_free(out);
    etcd_kvs_free(&kvs);
    return st;
}

enum tg_status fleet_cache_read(const char *dir, int64_t rev, struct fleet_rev *out, char *err,
                                size_t err_len)
{
    char path[4096], why[256];
    char *text = NULL;
    size_t len = 0;
    memset(out, 0, sizeof(*out));
    rev_path(path, sizeof(path), dir, rev);
    if (tg_read_file(path, FLEET_REV_MAX, &text, &len, why, sizeof(why)) != TG_OK) {
        snprintf(err, err_len, "%s: %s", path, why);
        return TG_E_CONFIG;
    }
    enum tg_status st = fleet_rev_decode(text, len, out, why, sizeof(why));
    free(text);
    if (st != TG_OK) {
        snprintf(err, err_len, "%s: %s", path, why);
        return st;
    }
    if (out->rev != rev) {
        snprintf(err, err_len, "%s: holds revision %" PRId64, path, out->rev);
        fleet_rev_free(out);
        return TG_E_PROTO;
    }
    for (size_t i = 0; i < out->n_files; i++) {
        blob_path(path, sizeof(path), dir, out->files[i].sha);
        if (access(path, R_OK) != 0) {
            snprintf(err, err_len, "%s: missing (for %s)", path, out->files[i].path);
            fleet_rev_free(out);
            return TG_E_CONFIG;
        }
    }
    return TG_OK;
}

int64_t fleet_cache_applied(const char *dir)
{
    char path[4096], err[256];
    char *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/applied", dir);
    if (tg_read_file(path, 64, &text, &len, err, sizeof(err)) != TG_OK)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    bool ok = errno == 0 && end != text && (*end == '\n' || *end == '\0') && v > 0;
    free(text);
    return ok ? v : 0;
}

enum tg_status fleet_cache_set_applied(const char *dir, int64_t rev, char *err, size_t err_len)
{
    char path[4096], text[32];
    snprintf(path, sizeof(path), "%s/applied", dir);
    int n = snprintf(text, sizeof(text), "%" PRId64 "\n", rev);
    return tg_write_file_atomic(path, text, (size_t)n, 0600, err, err_len);
}

struct map_ctx {
    const char *dir;
    const struct fleet_rev *r;
    bool is_staged;
};

static char *map_path(void *arg, const char *path)
{
    const struct map_ctx *m = arg;
    char dst[4096];
    for (size_t i = 0; i < m->r->n_files; i++) {
        const struct fleet_file *f = &m->r->files[i];
        if (strcmp(f->path, path) != 0)
            continue;
        if (m->is_staged)
            blob_path(dst, sizeof(dst), m->dir, f->sha);
        else
            stable_path(dst, sizeof(dst), m->dir, f->path);
        return strdup(dst);
    }
    return NULL;
}

enum tg_status fleet_cache_load(const char *dir, const struct fleet_rev *r, bool is_staged,
                                struct config **out, struct diag *d)
{
    struct map_ctx m = {dir, r, is_staged};
    struct config_path_map map = {map_path, &m};
    char *base = strdup(r->config_path);
    if (base == NULL) {
        diag_add(d, DIAG_ERROR, NULL, 0, 0, NULL, "out of memory");
        return TG_E_NOMEM;
    }
    char *slash = strrchr(base, '/');
    slash[slash == base ? 1 : 0] = '\0';
    enum tg_status st =
        config_load_mapped(r->config_path, base, &map, r->config_text, r->config_len, out, d);
    free(base);
    return st;
}

enum tg_status fleet_cache_install(const char *dir, const struct fleet_rev *r, char *err,
                                   size_t err_len)
{
    char from[4096], to[4096];
    for (size_t i = 0; i < r->n_files; i++) {
        const struct fleet_file *f = &r->files[i];
        stable_path(to, sizeof(to), dir, f->path);
        if (blob_ok(to, f->sha))
            continue;
        blob_path(from, sizeof(from), dir, f->sha);
        char *data = NULL, hex[65], why[200];
        size_t len = 0;
        if (tg_read_file(from, ETCD_VALUE_MAX, &data, &len, why, sizeof(why)) != TG_OK) {
            snprintf(err, err_len, "%s: %s", from, why);
            return TG_E_CONFIG;
        }
        /* What was checked is what runs: the blob again, against its name. */
        fleet_sha256_hex(data, len, hex);
        if (strcmp(hex, f->sha) != 0) {
            explicit_bzero(data, len);
            free(data);
            snprintf(err, err_len, "%s: contents changed in the cache", from);
            return TG_E_CONFIG;
        }
        enum tg_status st =
            tg_write_file_atomic(to, data, len, f->is_secret ? 0600 : 0644, err, err_len);
        explicit_bzero(data, len);
        free(data);
        if (st != TG_OK)
            return st;
    }
    return TG_OK;
}

/* Whether the file at stable is read by anything but the CRL and allow
 * file watches (a CA bundle that also holds the CRL, a certificate...). */
static bool is_read_otherwise(const struct config *cfg, const char *stable)
{
    for (size_t i = 0; i < cfg->n_certificates; i++) {
        const struct cfg_certificate *c = &cfg->certificates[i];
        const char *v[] = {c->cert, c->key, c->password_file, c->ocsp_file};
        for (size_t k = 0; k < TG_ARRAY_LEN(v); k++)
            if (v[k] != NULL && strcmp(v[k], stable) == 0)
                return true;
    }
    for (size_t i = 0; i < cfg->n_client_cas; i++)
        if (strcmp(cfg->client_cas[i].ca, stable) == 0)
            return true;
    const char *top[] = {cfg->ticket_keys_file, cfg->admin_token_file};
    for (size_t k = 0; k < TG_ARRAY_LEN(top); k++)
        if (top[k] != NULL && strcmp(top[k], stable) == 0)
            return true;
    return false;
}

static bool is_watched(const struct config *cfg, const char *stable)
{
    for (size_t i = 0; i < cfg->n_client_cas; i++)
        if (cfg->client_cas[i].crl != NULL && strcmp(cfg->client_cas[i].crl, stable) == 0)
            return true;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        for (size_t k = 0; k < cfg->listeners[i].tls.n_sites; k++) {
            const char *a = cfg->listeners[i].tls.sites[k].allow_file;
            if (a != NULL && strcmp(a, stable) == 0)
                return true;
        }
    return false;
}

bool fleet_rev_only_watched_changed(const char *dir, const struct fleet_rev *a,
                                    const struct fleet_rev *b, const struct config *cfg)
{
    if (a == NULL || b == NULL || cfg == NULL || a->config_len != b->config_len ||
        memcmp(a->config_text, b->config_text, a->config_len) != 0 ||
        strcmp(a->config_path, b->config_path) != 0 || a->n_files != b->n_files ||
        a->n_local != b->n_local)
        return false;
    for (size_t i = 0; i < a->n_local; i++)
        if (strcmp(a->local[i], b->local[i]) != 0)
            return false;
    for (size_t i = 0; i < a->n_files; i++) {
        const struct fleet_file *x = &a->files[i], *y = &b->files[i];
        if (strcmp(x->path, y->path) != 0 || x->is_secret != y->is_secret)
            return false;
        char stable[4096];
        stable_path(stable, sizeof(stable), dir, x->path);
        if (strcmp(x->sha, y->sha) != 0 &&
            (!is_watched(cfg, stable) || is_read_otherwise(cfg, stable)))
            return false;
    }
    return true;
}
