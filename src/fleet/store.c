/* The revisions of a fleet in etcd: the head, the documents, the history
 * lines, and the endpoint list. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "fleet/fleet.h"
#include "fleet/internal.h"

bool fleet_parse_urls(char *text, struct fleet_opts *o, char *err, size_t err_len)
{
    o->n_urls = 0;
    for (char *save = NULL, *u = strtok_r(text, ",", &save); u != NULL;
         u = strtok_r(NULL, ",", &save)) {
        if (o->n_urls == ETCD_URLS_MAX) {
            snprintf(err, err_len, "at most %d URLs", ETCD_URLS_MAX);
            return false;
        }
        if (!config_fleet_url_ok(u)) {
            snprintf(err, err_len, "\"%.100s\" is not an http:// or https:// URL", u);
            return false;
        }
        o->urls[o->n_urls++] = u;
    }
    if (o->n_urls == 0) {
        snprintf(err, err_len, "no URL");
        return false;
    }
    return true;
}

bool fleet_head_parse(const uint8_t *v, size_t len, struct fleet_head *out)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)v, len, 0, &jerr);
    const json_t *rev = json_object_get(j, "rev");
    const char *sha = json_string_value(json_object_get(j, "sha256"));
    const char *by = json_string_value(json_object_get(j, "by"));
    const json_t *at = json_object_get(j, "at");
    bool ok = json_is_integer(rev) && json_integer_value(rev) > 0 && fleet_is_hex64(sha) &&
              json_is_integer(at);
    if (ok) {
        out->rev = json_integer_value(rev);
        memcpy(out->sha, sha, 65);
        snprintf(out->by, sizeof(out->by), "%s", by ? by : "");
        out->at = json_integer_value(at);
    }
    json_decref(j);
    return ok;
}

enum tg_status fleet_head_read(struct etcd *e, const char *prefix, struct fleet_head *out,
                               char *err, size_t err_len)
{
    char key[512];
    struct etcd_kvs kvs;
    memset(out, 0, sizeof(*out));
    fleet_key(key, sizeof(key), prefix, "head");
    if (etcd_get(e, key, &kvs) != TG_OK) {
        snprintf(err, err_len, "%s", etcd_error(e));
        return TG_E_CLOSED;
    }
    enum tg_status st = TG_OK;
    if (kvs.n == 1) {
        out->mod_rev = kvs.v[0].mod_rev;
        if (!fleet_head_parse(kvs.v[0].value, kvs.v[0].len, out)) {
            snprintf(err, err_len, "%s: not a head this version of tollgate reads", key);
            st = TG_E_PROTO;
        }
    }
    etcd_kvs_free(&kvs);
    return st;
}

static char *head_json(const struct fleet_rev *r)
{
    json_t *j = json_pack("{s:I,s:s,s:s,s:I}", "rev", (json_int_t)r->rev, "sha256", r->sha, "by",
                          r->by ? r->by : "", "at", (json_int_t)r->at);
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    return s;
}

static char *log_json(const struct fleet_rev *r)
{
    json_t *j = json_pack("{s:I,s:I,s:I,s:s,s:s,s:s,s:I,s:I}", "rev", (json_int_t)r->rev, "parent",
                          (json_int_t)r->parent, "at", (json_int_t)r->at, "by", r->by ? r->by : "",
                          "sha256", r->sha, "message", r->message ? r->message : "", "files",
                          (json_int_t)r->n_files, "local", (json_int_t)r->n_local);
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    return s;
}

enum tg_status fleet_commit(struct etcd *e, const char *prefix, const struct fleet_head *head,
                            const struct fleet_rev *r, char *err, size_t err_len)
{
    char k_head[512], k_rev[512], k_log[512];
    fleet_key(k_head, sizeof(k_head), prefix, "head");
    fleet_key_rev(k_rev, sizeof(k_rev), prefix, r->rev);
    snprintf(k_log, sizeof(k_log), "%s/log/%012" PRId64, prefix, r->rev);
    char *doc = fleet_rev_encode(r);
    char *hj = head_json(r);
    char *lj = log_json(r);
    enum tg_status st = TG_E_NOMEM;
    if (doc == NULL || hj == NULL || lj == NULL) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    if (strlen(doc) > FLEET_REV_MAX) {
        snprintf(err, err_len, "the revision document is over %u bytes", FLEET_REV_MAX);
        st = TG_E_CONFIG;
        goto out;
    }
    /* The head is compared; the document key too, so that a revision
     * number is never written twice. */
    const struct etcd_cmp cmp[] = {{k_head, head->mod_rev}, {k_rev, 0}};
    const struct etcd_op ops[] = {
        {k_rev, doc, strlen(doc), 0},
        {k_log, lj, strlen(lj), 0},
        {k_head, hj, strlen(hj), 0},
    };
    bool ok = false;
    st = etcd_txn(e, cmp, TG_ARRAY_LEN(cmp), ops, TG_ARRAY_LEN(ops), &ok);
    if (st != TG_OK) {
        snprintf(err, err_len, "%s", etcd_error(e));
    } else if (!ok) {
        struct fleet_head now;
        char why[256];
        if (fleet_head_read(e, prefix, &now, why, sizeof(why)) == TG_OK)
            snprintf(err, err_len,
                     "conflict: %s moved to revision %" PRId64 " (by %s) while this push was "
                     "made on top of %" PRId64 "; nothing pushed: look at what changed "
                     "(fleet history) and push again",
                     prefix, now.rev, now.by, head->rev);
        else
            snprintf(err, err_len, "conflict: %s changed while this push was made", prefix);
        st = TG_E_AGAIN;
    }
out:
    free(doc);
    free(hj);
    free(lj);
    return st;
}

enum tg_status fleet_rev_read(struct etcd *e, const char *prefix, int64_t rev,
                              struct fleet_rev *out, char *err, size_t err_len)
{
    char key[512], why[256];
    struct etcd_kvs kvs;
    memset(out, 0, sizeof(*out));
    fleet_key_rev(key, sizeof(key), prefix, rev);
    if (etcd_get(e, key, &kvs) != TG_OK) {
        snprintf(err, err_len, "%s", etcd_error(e));
        return TG_E_CLOSED;
    }
    enum tg_status st = TG_E_PROTO;
    if (kvs.n != 1)
        snprintf(err, err_len, "%s: no such revision", key);
    else if (kvs.v[0].is_too_large)
        snprintf(err, err_len, "%s: larger than 1 MiB", key);
    else if (fleet_rev_decode((const char *)kvs.v[0].value, kvs.v[0].len, out, why, sizeof(why)) !=
             TG_OK)
        snprintf(err, err_len, "%s: %s", key, why);
    else if (out->rev != rev) {
        snprintf(err, err_len, "%s: holds revision %" PRId64, key, out->rev);
        fleet_rev_free(out);
    } else
        st = TG_OK;
    etcd_kvs_free(&kvs);
    return st;
}

enum tg_status fleet_log_read(struct etcd *e, const char *prefix, size_t limit, json_t **out,
                              char *err, size_t err_len)
{
    char key[512];
    struct etcd_kvs kvs;
    *out = json_array();
    snprintf(key, sizeof(key), "%s/log/", prefix);
    if (*out == NULL || etcd_get_prefix_last(e, key, limit, &kvs) != TG_OK) {
        snprintf(err, err_len, "%s", etcd_error(e));
        return TG_E_CLOSED;
    }
    for (size_t i = 0; i < kvs.n; i++) {
        json_error_t jerr;
        json_t *j = json_loadb((const char *)kvs.v[i].value, kvs.v[i].len, 0, &jerr);
        bool ok = json_is_object(j) && json_is_integer(json_object_get(j, "rev")) &&
                  json_is_integer(json_object_get(j, "at")) &&
                  json_is_string(json_object_get(j, "by")) &&
                  json_is_string(json_object_get(j, "sha256")) &&
                  json_is_string(json_object_get(j, "message"));
        if (ok)
            json_array_append_new(*out, j);
        else
            json_decref(j);
    }
    etcd_kvs_free(&kvs);
    return TG_OK;
}
