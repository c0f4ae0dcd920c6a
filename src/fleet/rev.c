#include "fleet/rev.h"

#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "fleet/etcd.h"

void fleet_rev_free(struct fleet_rev *r)
{
    if (r == NULL)
        return;
    free(r->by);
    free(r->message);
    free(r->config_path);
    free(r->config_text);
    for (size_t i = 0; i < r->n_files; i++)
        free(r->files[i].path);
    free(r->files);
    for (size_t i = 0; i < r->n_local; i++)
        free(r->local[i]);
    free(r->local);
    memset(r, 0, sizeof(*r));
}

void fleet_sha256_hex(const void *data, size_t len, char hex[65])
{
    uint8_t md[32];
    unsigned n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (size_t i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

void fleet_rev_digest(struct fleet_rev *r)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    uint8_t md[32];
    unsigned n = 0;
    if (c == NULL) {
        r->sha[0] = '\0';
        return;
    }
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    /* Everything that changes what a node loads: where relative paths
     * resolve, the text, and each file's path, contents, size and form. */
    const char *path = r->config_path ? r->config_path : "";
    EVP_DigestUpdate(c, path, strlen(path) + 1);
    EVP_DigestUpdate(c, r->config_text, r->config_len);
    for (size_t i = 0; i < r->n_files; i++) {
        char tail[48];
        int n_tail = snprintf(tail, sizeof(tail), "%c%llu%c%d", '\0',
                              (unsigned long long)r->files[i].size, '\0', r->files[i].is_secret);
        EVP_DigestUpdate(c, "\n", 1);
        EVP_DigestUpdate(c, r->files[i].path, strlen(r->files[i].path) + 1);
        EVP_DigestUpdate(c, r->files[i].sha, 64);
        EVP_DigestUpdate(c, tail, (size_t)n_tail);
    }
    for (size_t i = 0; i < r->n_local; i++) {
        EVP_DigestUpdate(c, "\nlocal:", 7);
        EVP_DigestUpdate(c, r->local[i], strlen(r->local[i]) + 1);
    }
    EVP_DigestFinal_ex(c, md, &n);
    EVP_MD_CTX_free(c);
    for (size_t i = 0; i < 32; i++)
        snprintf(r->sha + 2 * i, 3, "%02x", md[i]);
}

char *fleet_rev_encode(const struct fleet_rev *r)
{
    json_t *j = json_object();
    json_t *files = json_array();
    json_t *local = json_array();
    json_object_set_new(j, "format", json_integer(1));
    json_object_set_new(j, "rev", json_integer(r->rev));
    json_object_set_new(j, "parent", json_integer(r->parent));
    json_object_set_new(j, "at", json_integer(r->at));
    json_object_set_new(j, "by", json_string(r->by ? r->by : ""));
    json_object_set_new(j, "message", json_string(r->message ? r->message : ""));
    json_object_set_new(j, "sha256", json_string(r->sha));
    json_object_set_new(j, "config_path", json_string(r->config_path));
    json_object_set_new(j, "config", json_stringn(r->config_text, r->config_len));
    for (size_t i = 0; i < r->n_files; i++) {
        json_t *f = json_object();
        json_object_set_new(f, "path", json_string(r->files[i].path));
        json_object_set_new(f, "sha256", json_string(r->files[i].sha));
        json_object_set_new(f, "size", json_integer((json_int_t)r->files[i].size));
        if (r->files[i].is_secret)
            json_object_set_new(f, "sealed", json_true());
        json_array_append_new(files, f);
    }
    for (size_t i = 0; i < r->n_local; i++)
        json_array_append_new(local, json_string(r->local[i]));
    json_object_set_new(j, "files", files);
    json_object_set_new(j, "local", local);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return text;
}

bool fleet_is_hex64(const char *s)
{
    if (s == NULL || strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

/* An absolute path with no NUL, no control character, no ".." segment. */
static bool path_ok(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (s == NULL || n == 0 || n > 4095 || s[0] != '/' || strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return strstr(s, "/../") == NULL && (n < 3 || strcmp(s + n - 3, "/..") != 0);
}

static bool text_field(const json_t *j, const char *name, size_t max, char **out)
{
    const json_t *v = json_object_get(j, name);
    const char *s = json_string_value(v);
    if (s == NULL || json_string_length(v) > max || strlen(s) != json_string_length(v))
        return false;
    *out = strdup(s);
    return *out != NULL;
}

static bool int_field(const json_t *j, const char *name, int64_t min, int64_t *out)
{
    const json_t *v = json_object_get(j, name);
    if (!json_is_integer(v) || json_integer_value(v) < min)
        return false;
    *out = json_integer_value(v);
    return true;
}

static bool seen(const struct fleet_rev *r, const char *path);

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, err_len, __VA_ARGS__);                                                       \
        goto fail;                                                                                 \
    } while (0)

enum tg_status fleet_rev_decode(const char *text, size_t len, struct fleet_rev *out, char *err,
                                size_t err_len)
{
    memset(out, 0, sizeof(*out));
    json_error_t jerr;
    json_t *j = len <= FLEET_REV_MAX ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!json_is_object(j))
        FAIL("not a revision document (%s)", len > FLEET_REV_MAX ? "too large" : jerr.text);
    int64_t format = 0;
    if (!int_field(j, "format", 1, &format) || format != 1)
        FAIL("unknown revision format");
    if (!int_field(j, "rev", 1, &out->rev) || !int_field(j, "parent", 0, &out->parent) ||
        !int_field(j, "at", 0, &out->at))
        FAIL("bad rev, parent or at");
    if (!text_field(j, "by", FLEET_TEXT_MAX, &out->by) ||
        !text_field(j, "message", FLEET_TEXT_MAX, &out->message))
        FAIL("bad by or message");
    const json_t *cp = json_object_get(j, "config_path");
    const json_t *ct = json_object_get(j, "config");
    if (!path_ok(cp) || !json_is_string(ct) || json_string_length(ct) > FLEET_REV_MAX)
        FAIL("bad config or config_path");
    out->config_path = strdup(json_string_value(cp));
    out->config_len = json_string_length(ct);
    out->config_text = malloc(out->config_len + 1);
    if (out->config_path == NULL || out->config_text == NULL)
        FAIL("out of memory");
    memcpy(out->config_text, json_string_value(ct), out->config_len);
    out->config_text[out->config_len] = '\0';
    const json_t *files = json_object_get(j, "files");
    const json_t *local = json_object_get(j, "local");
    if (!json_is_array(files) || !json_is_array(local) ||
        json_array_size(files) > FLEET_FILES_MAX || json_array_size(local) > FLEET_FILES_MAX)
        FAIL("bad files or local");
    out->files = calloc(json_array_size(files) + 1, sizeof(*out->files));
    out->local = calloc(json_array_size(local) + 1, sizeof(*out->local));
    if (out->files == NULL || out->local == NULL)
        FAIL("out of memory");
    for (size_t i = 0; i < json_array_size(files); i++) {
        const json_t *f = json_array_get(files, i);
        struct fleet_file *d = &out->files[i];
        const json_t *sealed = json_object_get(f, "sealed");
        int64_t size = 0;
        if (!json_is_object(f) || !path_ok(json_object_get(f, "path")) ||
            !fleet_is_hex64(json_string_value(json_object_get(f, "sha256"))) ||
            !int_field(f, "size", 0, &size) || size > ETCD_VALUE_MAX ||
            (sealed != NULL && !json_is_boolean(sealed)))
            FAIL("bad file %zu", i);
        d->path = strdup(json_string_value(json_object_get(f, "path")));
        out->n_files++;
        if (d->path == NULL)
            FAIL("out of memory");
        memcpy(d->sha, json_string_value(json_object_get(f, "sha256")), 65);
        d->size = (uint64_t)size;
        d->is_secret = json_is_true(sealed);
        for (size_t k = 0; k < i; k++)
            if (strcmp(out->files[k].path, d->path) == 0)
                FAIL("file %zu named twice", i);
    }
    for (size_t i = 0; i < json_array_size(local); i++) {
        const json_t *v = json_array_get(local, i);
        if (!path_ok(v))
            FAIL("bad local path %zu", i);
        if (seen(out, json_string_value(v)))
            FAIL("local path %zu named twice", i);
        out->local[i] = strdup(json_string_value(v));
        out->n_local++;
        if (out->local[i] == NULL)
            FAIL("out of memory");
    }
    const char *sha = json_string_value(json_object_get(j, "sha256"));
    if (!fleet_is_hex64(sha))
        FAIL("bad sha256");
    fleet_rev_digest(out);
    if (strcmp(sha, out->sha) != 0)
        FAIL("sha256 does not match the contents");
    json_decref(j);
    return TG_OK;
fail:
    json_decref(j);
    fleet_rev_free(out);
    return TG_E_PROTO;
}

/* ---- collecting a config's files ---- */

struct collect {
    const struct config *cfg;
    bool with_keys;
    struct fleet_rev *r;
    enum tg_status (*on_file)(void *arg, const struct fleet_file *f, const uint8_t *data);
    void *arg;
    struct diag *d;
    enum tg_status st;
};

static bool seen(const struct fleet_rev *r, const char *path)
{
    for (size_t i = 0; i < r->n_files; i++)
        if (strcmp(r->files[i].path, path) == 0)
            return true;
    for (size_t i = 0; i < r->n_local; i++)
        if (strcmp(r->local[i], path) == 0)
            return true;
    return false;
}

static void add(struct collect *c, const char *path, bool is_key)
{
    struct fleet_rev *r = c->r;
    if (path == NULL || c->st != TG_OK || seen(r, path))
        return;
    if (path[0] != '/') {
        diag_add(c->d, DIAG_ERROR, c->cfg->path, 0, 0, NULL,
                 "%s: a fleet needs absolute file paths (give the config's own path absolute)",
                 path);
        c->st = TG_E_CONFIG;
        return;
    }
    if (r->n_files + r->n_local >= FLEET_FILES_MAX) {
        diag_add(c->d, DIAG_ERROR, c->cfg->path, 0, 0, NULL,
                 "more than %d files: a revision cannot hold them", FLEET_FILES_MAX);
        c->st = TG_E_CONFIG;
        return;
    }
    if (is_key && !c->with_keys) {
        r->local[r->n_local] = strdup(path);
        if (r->local[r->n_local] == NULL)
            c->st = TG_E_NOMEM;
        else
            r->n_local++;
        return;
    }
    char err[256];
    char *data = NULL;
    size_t len = 0;
    if (tg_read_file(path, ETCD_VALUE_MAX, &data, &len, err, sizeof(err)) != TG_OK) {
        diag_add(c->d, DIAG_ERROR, c->cfg->path, 0, 0, NULL, "%s: %s%s", path, err,
                 strncmp(err, "larger", 6) == 0 ? " (a fleet stores files of at most 1 MiB)" : "");
        c->st = TG_E_CONFIG;
        return;
    }
    struct fleet_file *f = &r->files[r->n_files];
    f->path = strdup(path);
    f->size = len;
    f->is_secret = is_key;
    fleet_sha256_hex(data, len, f->sha);
    if (f->path == NULL) {
        c->st = TG_E_NOMEM;
    } else {
        r->n_files++;
        c->st = c->on_file(c->arg, f, (const uint8_t *)data);
    }
    if (is_key)
        explicit_bzero(data, len);
    free(data);
}

enum tg_status fleet_rev_collect(const struct config *cfg, bool with_keys, struct fleet_rev *r,
                                 enum tg_status (*on_file)(void *arg, const struct fleet_file *f,
                                                           const uint8_t *data),
                                 void *arg, struct diag *d)
{
    struct collect c = {cfg, with_keys, r, on_file, arg, d, TG_OK};
    r->files = calloc(FLEET_FILES_MAX, sizeof(*r->files));
    r->local = calloc(FLEET_FILES_MAX, sizeof(*r->local));
    if (r->files == NULL || r->local == NULL)
        return TG_E_NOMEM;
    for (size_t i = 0; i < cfg->n_certificates; i++) {
        const struct cfg_certificate *e = &cfg->certificates[i];
        add(&c, e->cert, false);
        add(&c, e->key, true);
        add(&c, e->password_file, true);
        add(&c, e->ocsp_file, false);
    }
    for (size_t i = 0; i < cfg->n_client_cas; i++) {
        add(&c, cfg->client_cas[i].ca, false);
        add(&c, cfg->client_cas[i].crl, false);
    }
    for (size_t i = 0; i < cfg->n_listeners; i++)
        for (size_t k = 0; k < cfg->listeners[i].tls.n_sites; k++)
            add(&c, cfg->listeners[i].tls.sites[k].allow_file, false);
    add(&c, cfg->ticket_keys_file, true);
    add(&c, cfg->admin_token_file, true);
    return c.st;
}

bool fleet_prefix_ok(char *prefix, char *err, size_t err_len)
{
    return config_fleet_prefix_ok(prefix, err, err_len);
}

bool fleet_node_name_ok(const char *name)
{
    return config_fleet_node_ok(name);
}

void fleet_key_rev(char *dst, size_t len, const char *prefix, int64_t rev)
{
    snprintf(dst, len, "%s/revs/%012" PRId64, prefix, rev);
}

void fleet_key(char *dst, size_t len, const char *prefix, const char *rest)
{
    snprintf(dst, len, "%s/%s", prefix, rest);
}
