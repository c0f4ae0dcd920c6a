#include "fleet/etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/b64.h"

#define KEY_MAX 4096 /* bytes of a key this client reads */

struct etcd {
    char *urls[ETCD_URLS_MAX];
    size_t n_urls;
    size_t cur; /* the endpoint in use */
    unsigned timeout_ms;
    char *ca_file, *cert_file, *key_file; /* owned; NULL: none */
    CURL *curl;                           /* reused: keeps its connection */
    char err[512];
};

struct body {
    char *p;
    size_t len, cap, max;
    bool is_too_big;
};

static void set_err(struct etcd *e, const char *fmt, ...) TG_PRINTF(2, 3);
static void set_err(struct etcd *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err, sizeof(e->err), fmt, ap);
    va_end(ap);
}

const char *etcd_error(const struct etcd *e)
{
    return e->err[0] ? e->err : "no error";
}

const char *etcd_endpoint(const struct etcd *e)
{
    return e->urls[e->cur];
}

struct etcd *etcd_new(const char *const *urls, size_t n, unsigned timeout_ms,
                      const struct etcd_tls *tls)
{
    if (n == 0 || n > ETCD_URLS_MAX)
        return NULL;
    struct etcd *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->timeout_ms = timeout_ms;
    const char *src[] = {tls ? tls->ca_file : NULL, tls ? tls->cert_file : NULL,
                         tls ? tls->key_file : NULL};
    char **dst[] = {&e->ca_file, &e->cert_file, &e->key_file};
    for (size_t i = 0; i < TG_ARRAY_LEN(src); i++)
        if (src[i] != NULL && (*dst[i] = strdup(src[i])) == NULL) {
            etcd_free(e);
            return NULL;
        }
    e->curl = curl_easy_init();
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(urls[i]);
        while (len > 0 && urls[i][len - 1] == '/')
            len--;
        e->urls[i] = strndup(urls[i], len);
        e->n_urls++;
        if (e->urls[i] == NULL)
            break;
    }
    if (e->curl == NULL || e->urls[n - 1] == NULL) {
        etcd_free(e);
        return NULL;
    }
    return e;
}

void etcd_free(struct etcd *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->n_urls; i++)
        free(e->urls[i]);
    free(e->ca_file);
    free(e->cert_file);
    free(e->key_file);
    if (e->curl != NULL)
        curl_easy_cleanup(e->curl);
    free(e);
}

static size_t body_write(char *data, size_t size, size_t n, void *arg)
{
    struct body *b = arg;
    size_t len = size * n;
    if (len > b->max - b->len) {
        b->is_too_big = true;
        return 0;
    }
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return len;
}

/* A member that lost its leader answers "no leader" at once with this
 * header, instead of keeping a watch open and silent, or a keepalive
 * waiting for seconds. */
static struct curl_slist *json_headers(void)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = h ? curl_slist_append(h, "Grpc-Metadata-hasleader: true") : NULL;
    if (h2 == NULL)
        curl_slist_free_all(h);
    return h2;
}

static void setup_post(const struct etcd *e, CURL *c, const char *url, const char *req,
                       unsigned timeout_ms, struct curl_slist *hdrs)
{
    if (e->ca_file != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, e->ca_file);
    if (e->cert_file != NULL)
        curl_easy_setopt(c, CURLOPT_SSLCERT, e->cert_file);
    if (e->key_file != NULL)
        curl_easy_setopt(c, CURLOPT_SSLKEY, e->key_file);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(req));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 1000 ? timeout_ms : 1000));
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
}

/* Whether the JSON text p[0..len) opens more than max objects and arrays
 * (outside strings): parsed, each costs far more than its two bytes. */
static bool json_nodes_over(const char *p, size_t len, size_t max)
{
    size_t n = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if ((c == '{' || c == '[') && ++n > max) {
            return true;
        }
    }
    return false;
}

/* POSTs req to path on the endpoint in use, then on the others when it
 * cannot be reached. The answer (HTTP 200, a JSON object) goes to *out. */
static enum tg_status call(struct etcd *e, const char *path, json_t *req, json_t **out)
{
    *out = NULL;
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (text == NULL) {
        set_err(e, "out of memory");
        return TG_E_NOMEM;
    }
    struct curl_slist *hdrs = json_headers();
    enum tg_status st = TG_E_CLOSED;
    for (size_t tries = 0; tries < e->n_urls; tries++) {
        char url[1024];
        snprintf(url, sizeof(url), "%s%s", e->urls[e->cur], path);
        struct body b = {.max = ETCD_RESP_MAX};
        curl_easy_reset(e->curl);
        setup_post(e, e->curl, url, text, e->timeout_ms, hdrs);
        curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
        curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, body_write);
        curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, &b);
        CURLcode rc = curl_easy_perform(e->curl);
        long code = 0;
        curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &code);
        if (rc != CURLE_OK && !b.is_too_big) {
            set_err(e, "%s: %s", e->urls[e->cur], curl_easy_strerror(rc));
            free(b.p);
            e->cur = (e->cur + 1) % e->n_urls;
            continue;
        }
        json_error_t jerr;
        bool is_dense = !b.is_too_big && json_nodes_over(b.p, b.len, ETCD_JSON_NODES_MAX);
        json_t *j = b.is_too_big || is_dense ? NULL : json_loadb(b.p ? b.p : "", b.len, 0, &jerr);
        st = TG_E_PROTO; /* unless it is the answer asked for */
        if (b.is_too_big)
            set_err(e, "%s: answer larger than %u bytes", e->urls[e->cur], ETCD_RESP_MAX);
        else if (is_dense)
            set_err(e, "%s: answer of more than %d JSON objects and arrays", e->urls[e->cur],
                    ETCD_JSON_NODES_MAX);
        else if (j == NULL || !json_is_object(j))
            set_err(e, "%s%s: HTTP %ld, not a JSON object", e->urls[e->cur], path, code);
        else if (code != 200) {
            const char *msg = json_string_value(json_object_get(j, "message"));
            if (msg == NULL)
                msg = json_string_value(json_object_get(j, "error"));
            set_err(e, "%s%s: HTTP %ld: %.200s", e->urls[e->cur], path, code,
                    msg ? msg : "no message");
            if (code == 503) {
                /* This member lost its leader or is stopping: another may
                 * answer. */
                json_decref(j);
                free(b.p);
                e->cur = (e->cur + 1) % e->n_urls;
                st = TG_E_CLOSED;
                continue;
            }
        } else {
            *out = j;
            j = NULL;
            st = TG_OK;
        }
        json_decref(j);
        free(b.p);
        break;
    }
    curl_slist_free_all(hdrs);
    free(text);
    return st;
}

/* A 64-bit field, as a JSON string (the gateway's way) or a number;
 * absent is 0 (the gateway leaves out zero values). False if malformed. */
static bool get_i64(const json_t *o, const char *name, int64_t *out)
{
    const json_t *v = json_object_get(o, name);
    *out = 0;
    if (v == NULL)
        return true;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    const char *s = json_string_value(v);
    if (s == NULL || *s == '\0')
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = x;
    return true;
}

static json_t *b64_str(const void *data, size_t len)
{
    char *s = fleet_b64_encode(data, len);
    json_t *j = s ? json_string(s) : NULL;
    free(s);
    return j;
}

static json_t *i64_str(int64_t v)
{
    char s[32];
    snprintf(s, sizeof(s), "%" PRId64, v);
    return json_string(s);
}

/* The first key after every key that starts with prefix. */
static json_t *range_end(const char *prefix)
{
    size_t n = strlen(prefix);
    uint8_t end[KEY_MAX];
    if (n == 0 || n > sizeof(end))
        return NULL;
    memcpy(end, prefix, n);
    while (n > 0 && end[n - 1] == 0xff)
        n--;
    if (n == 0)
        return b64_str("\0", 1);
    end[n - 1]++;
    return b64_str(end, n);
}

static bool decode_b64_field(const json_t *o, const char *name, size_t max, uint8_t **out,
                             size_t *len)
{
    const json_t *v = json_object_get(o, name);
    if (v == NULL) {
        *out = calloc(1, 1);
        *len = 0;
        return *out != NULL;
    }
    const char *s = json_string_value(v);
    return s != NULL && fleet_b64_decode(s, json_string_length(v), max, out, len);
}

void etcd_kvs_free(struct etcd_kvs *kvs)
{
    for (size_t i = 0; i < kvs->n; i++) {
        free(kvs->v[i].key);
        free(kvs->v[i].value);
    }
    free(kvs->v);
    memset(kvs, 0, sizeof(*kvs));
}

static enum tg_status parse_kvs(struct etcd *e, const json_t *res, size_t max, struct etcd_kvs *out)
{
    const json_t *hdr = json_object_get(res, "header");
    const json_t *kvs = json_object_get(res, "kvs");
    if (!json_is_object(hdr) || !get_i64(hdr, "revision", &out->revision) ||
        (kvs != NULL && !json_is_array(kvs)) || json_array_size(kvs) > max) {
        set_err(e, "malformed range answer (or more than the %zu keys asked for)", max);
        return TG_E_PROTO;
    }
    size_t n = json_array_size(kvs);
    out->v = calloc(n + 1, sizeof(*out->v));
    if (out->v == NULL)
        return TG_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        const json_t *kv = json_array_get(kvs, i);
        struct etcd_kv *d = &out->v[i];
        out->n++;
        size_t klen;
        /* A value over ETCD_VALUE_MAX is kept as an empty one marked too
         * large: the key is there, the caller refuses what it holds. */
        const json_t *jv = json_object_get(kv, "value");
        d->is_too_large = json_string_length(jv) > (ETCD_VALUE_MAX + 2) / 3 * 4;
        if (!json_is_object(kv) || !json_is_string(json_object_get(kv, "key")) ||
            !decode_b64_field(kv, "key", KEY_MAX, (uint8_t **)&d->key, &klen) || klen == 0 ||
            memchr(d->key, '\0', klen) != NULL ||
            !decode_b64_field(kv, d->is_too_large ? "" : "value", ETCD_VALUE_MAX, &d->value,
                              &d->len) ||
            !get_i64(kv, "mod_revision", &d->mod_rev) ||
            !get_i64(kv, "create_revision", &d->create_rev) || !get_i64(kv, "lease", &d->lease)) {
            set_err(e, "malformed key-value %zu in a range answer", i);
            etcd_kvs_free(out);
            return TG_E_PROTO;
        }
    }
    return TG_OK;
}

static enum tg_status range(struct etcd *e, const char *key, bool is_prefix, size_t limit,
                            bool is_last, struct etcd_kvs *out)
{
    memset(out, 0, sizeof(*out));
    json_t *req = json_object();
    json_object_set_new(req, "key", b64_str(key, strlen(key)));
    if (is_prefix)
        json_object_set_new(req, "range_end", range_end(key));
    if (is_last) {
        json_object_set_new(req, "sort_order", json_string("DESCEND"));
        json_object_set_new(req, "sort_target", json_string("KEY"));
    }
    if (limit > 0)
        json_object_set_new(req, "limit", i64_str((int64_t)limit));
    json_t *res;
    enum tg_status st = call(e, "/v3/kv/range", req, &res);
    if (st == TG_OK)
        st = parse_kvs(e, res, is_prefix ? (limit > 0 ? limit : ETCD_KVS_MAX) : 1, out);
    json_decref(res);
    return st;
}

enum tg_status etcd_get(struct etcd *e, const char *key, struct etcd_kvs *out)
{
    return range(e, key, false, 0, false, out);
}

enum tg_status etcd_get_prefix(struct etcd *e, const char *prefix, size_t limit,
                               struct etcd_kvs *out)
{
    return range(e, prefix, true, limit, false, out);
}

enum tg_status etcd_get_prefix_last(struct etcd *e, const char *prefix, size_t limit,
                                    struct etcd_kvs *out)
{
    enum tg_status st = range(e, prefix, true, limit, true, out);
    for (size_t i = 0; st == TG_OK && i < out->n / 2; i++) {
        struct etcd_kv t = out->v[i];
        out->v[i] = out->v[out->n - 1 - i];
        out->v[out->n - 1 - i] = t;
    }
    return st;
}

static json_t *put_req(const char *key, const void *value, size_t len, int64_t lease)
{
    json_t *req = json_object();
    json_object_set_new(req, "key", b64_str(key, strlen(key)));
    json_object_set_new(req, "value", b64_str(value, len));
    if (lease != 0)
        json_object_set_new(req, "lease", i64_str(lease));
    return req;
}

enum tg_status etcd_put(struct etcd *e, const char *key, const void *value, size_t len,
                        int64_t lease)
{
    if (len > ETCD_VALUE_MAX) {
        set_err(e, "%s: value of %zu bytes is over %u", key, len, ETCD_VALUE_MAX);
        return TG_E_CONFIG;
    }
    json_t *res;
    enum tg_status st = call(e, "/v3/kv/put", put_req(key, value, len, lease), &res);
    json_decref(res);
    return st;
}

enum tg_status etcd_delete(struct etcd *e, const char *key)
{
    json_t *req = json_object();
    json_object_set_new(req, "key", b64_str(key, strlen(key)));
    json_t *res;
    enum tg_status st = call(e, "/v3/kv/deleterange", req, &res);
    json_decref(res);
    return st;
}

enum tg_status etcd_txn(struct etcd *e, const struct etcd_cmp *cmp, size_t n_cmp,
                        const struct etcd_op *ops, size_t n_ops, bool *succeeded)
{
    *succeeded = false;
    json_t *req = json_object();
    json_t *jc = json_array();
    json_t *js = json_array();
    for (size_t i = 0; i < n_cmp; i++) {
        json_t *c = json_object();
        json_object_set_new(c, "key", b64_str(cmp[i].key, strlen(cmp[i].key)));
        json_object_set_new(c, "result", json_string("EQUAL"));
        if (cmp[i].mod_rev == 0) {
            json_object_set_new(c, "target", json_string("CREATE"));
            json_object_set_new(c, "create_revision", json_string("0"));
        } else {
            json_object_set_new(c, "target", json_string("MOD"));
            json_object_set_new(c, "mod_revision", i64_str(cmp[i].mod_rev));
        }
        json_array_append_new(jc, c);
    }
    for (size_t i = 0; i < n_ops; i++) {
        if (ops[i].len > ETCD_VALUE_MAX) {
            json_decref(req);
            json_decref(jc);
            json_decref(js);
            set_err(e, "%s: value of %zu bytes is over %u", ops[i].key, ops[i].len, ETCD_VALUE_MAX);
            return TG_E_CONFIG;
        }
        json_t *op = json_object();
        json_object_set_new(op, "request_put",
                            put_req(ops[i].key, ops[i].value, ops[i].len, ops[i].lease));
        json_array_append_new(js, op);
    }
    json_object_set_new(req, "compare", jc);
    json_object_set_new(req, "success", js);
    json_t *res;
    enum tg_status st = call(e, "/v3/kv/txn", req, &res);
    if (st == TG_OK) {
        const json_t *s = json_object_get(res, "succeeded");
        if (s != NULL && !json_is_boolean(s)) {
            set_err(e, "malformed transaction answer");
            st = TG_E_PROTO;
        }
        *succeeded = json_is_true(s);
    }
    json_decref(res);
    return st;
}

enum tg_status etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id)
{
    *id = 0;
    json_t *req = json_object();
    json_object_set_new(req, "TTL", i64_str(ttl_s));
    json_t *res;
    enum tg_status st = call(e, "/v3/lease/grant", req, &res);
    if (st == TG_OK && (!get_i64(res, "ID", id) || *id == 0)) {
        const char *msg = json_string_value(json_object_get(res, "error"));
        set_err(e, "lease not granted: %.200s", msg ? msg : "no ID in the answer");
        st = TG_E_PROTO;
    }
    json_decref(res);
    return st;
}

enum tg_status etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl_left)
{
    *ttl_left = 0;
    json_t *req = json_object();
    json_object_set_new(req, "ID", i64_str(id));
    json_t *res;
    enum tg_status st = call(e, "/v3/lease/keepalive", req, &res);
    if (st == TG_OK) {
        /* The gateway streams keepalive answers: {"result":{"ID","TTL"}}. */
        const json_t *r = json_object_get(res, "result");
        if (!json_is_object(r) || !get_i64(r, "TTL", ttl_left)) {
            set_err(e, "malformed keepalive answer");
            st = TG_E_PROTO;
        }
    }
    json_decref(res);
    return st;
}

enum tg_status etcd_lease_revoke(struct etcd *e, int64_t id)
{
    json_t *req = json_object();
    json_object_set_new(req, "ID", i64_str(id));
    json_t *res;
    enum tg_status st = call(e, "/v3/lease/revoke", req, &res);
    json_decref(res);
    return st;
}

/* ---- watch ---- */

struct etcd_watch {
    struct etcd *e;
    CURLM *multi;
    CURL *easy;
    struct curl_slist *hdrs;
    char *req;
    struct body buf; /* bytes not yet split into messages */
    int64_t next_rev;
    bool is_over;
    etcd_event_fn on_event;
    void *arg;
};

/* One message of the stream: {"result":{"header":…,"events":[…]}} or an
 * error. Returns false when the watch cannot go on. */
static bool watch_message(struct etcd_watch *w, const char *p, size_t len)
{
    json_error_t jerr;
    json_t *j = json_loadb(p, len, 0, &jerr);
    const json_t *r = json_object_get(j, "result");
    bool ok = json_is_object(r);
    if (!ok) {
        const json_t *err = json_object_get(j, "error");
        const char *msg = json_string_value(json_object_get(err, "message"));
        set_err(w->e, "watch: %.200s", msg ? msg : "malformed message");
    }
    int64_t compact = 0;
    if (ok && get_i64(r, "compact_revision", &compact) && compact != 0) {
        set_err(w->e, "watch: revision %" PRId64 " was compacted", w->next_rev);
        ok = false;
    }
    if (ok && json_is_true(json_object_get(r, "canceled"))) {
        set_err(w->e, "watch: cancelled by the server");
        ok = false;
    }
    const json_t *evs = ok ? json_object_get(r, "events") : NULL;
    for (size_t i = 0; i < json_array_size(evs); i++) {
        const json_t *ev = json_array_get(evs, i);
        const json_t *kv = json_object_get(ev, "kv");
        uint8_t *key = NULL;
        size_t klen = 0;
        int64_t mod = 0;
        if (!json_is_object(kv) || !decode_b64_field(kv, "key", KEY_MAX, &key, &klen) ||
            memchr(key, '\0', klen) != NULL || !get_i64(kv, "mod_revision", &mod)) {
            free(key);
            set_err(w->e, "watch: malformed event");
            ok = false;
            break;
        }
        const char *type = json_string_value(json_object_get(ev, "type"));
        bool is_delete = type != NULL && strcmp(type, "DELETE") == 0;
        if (mod >= w->next_rev && mod < INT64_MAX)
            w->next_rev = mod + 1;
        w->on_event(w->arg, (const char *)key, is_delete, mod);
        free(key);
    }
    json_decref(j);
    return ok;
}

static size_t watch_write(char *data, size_t size, size_t n, void *arg)
{
    struct etcd_watch *w = arg;
    size_t len = size * n;
    if (body_write(data, 1, len, &w->buf) != len)
        return 0;
    /* Messages are JSON objects, one a line. */
    char *start = w->buf.p;
    char *nl;
    while ((nl = memchr(start, '\n', w->buf.len - (size_t)(start - w->buf.p))) != NULL) {
        if (nl > start && !watch_message(w, start, (size_t)(nl - start))) {
            w->is_over = true;
            return 0;
        }
        start = nl + 1;
    }
    size_t rest = w->buf.len - (size_t)(start - w->buf.p);
    memmove(w->buf.p, start, rest);
    w->buf.len = rest;
    if (w->buf.p != NULL)
        w->buf.p[rest] = '\0';
    return len;
}

struct etcd_watch *etcd_watch_start(struct etcd *e, const char *prefix, int64_t start_rev)
{
    struct etcd_watch *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->e = e;
    w->next_rev = start_rev;
    w->buf.max = ETCD_RESP_MAX;
    json_t *cr = json_object();
    json_object_set_new(cr, "key", b64_str(prefix, strlen(prefix)));
    json_object_set_new(cr, "range_end", range_end(prefix));
    if (start_rev > 0)
        json_object_set_new(cr, "start_revision", i64_str(start_rev));
    json_t *req = json_object();
    json_object_set_new(req, "create_request", cr);
    w->req = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    w->multi = curl_multi_init();
    w->easy = curl_easy_init();
    w->hdrs = json_headers();
    if (w->req == NULL || w->multi == NULL || w->easy == NULL || w->hdrs == NULL) {
        etcd_watch_free(w);
        return NULL;
    }
    char url[1024];
    snprintf(url, sizeof(url), "%s/v3/watch", e->urls[e->cur]);
    setup_post(e, w->easy, url, w->req, e->timeout_ms, w->hdrs);
    curl_easy_setopt(w->easy, CURLOPT_WRITEFUNCTION, watch_write);
    curl_easy_setopt(w->easy, CURLOPT_WRITEDATA, w);
    /* A stream that carries nothing for long is dead (etcd sends progress
     * only when asked): the agent restarts it after a quiet minute. */
    curl_easy_setopt(w->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(w->easy, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(w->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_multi_add_handle(w->multi, w->easy);
    return w;
}

enum tg_status etcd_watch_wait(struct etcd_watch *w, int extra_fd, int timeout_ms,
                               etcd_event_fn on_event, void *arg)
{
    if (w->is_over)
        return TG_E_CLOSED;
    w->on_event = on_event;
    w->arg = arg;
    struct curl_waitfd extra = {.fd = extra_fd, .events = CURL_WAIT_POLLIN};
    int running = 0;
    curl_multi_perform(w->multi, &running);
    if (running > 0)
        curl_multi_poll(w->multi, extra_fd >= 0 ? &extra : NULL, extra_fd >= 0 ? 1 : 0, timeout_ms,
                        NULL);
    curl_multi_perform(w->multi, &running);
    if (running == 0 || w->is_over) {
        if (!w->is_over) {
            int left;
            CURLMsg *msg = curl_multi_info_read(w->multi, &left);
            set_err(w->e, "watch: stream ended%s%s", msg ? ": " : "",
                    msg ? curl_easy_strerror(msg->data.result) : "");
            /* The next call starts from another endpoint. */
            w->e->cur = (w->e->cur + 1) % w->e->n_urls;
        }
        w->is_over = true;
        return TG_E_CLOSED;
    }
    return TG_OK;
}

int64_t etcd_watch_next_rev(const struct etcd_watch *w)
{
    return w->next_rev;
}

void etcd_watch_free(struct etcd_watch *w)
{
    if (w == NULL)
        return;
    if (w->multi != NULL && w->easy != NULL)
        curl_multi_remove_handle(w->multi, w->easy);
    if (w->easy != NULL)
        curl_easy_cleanup(w->easy);
    if (w->multi != NULL)
        curl_multi_cleanup(w->multi);
    curl_slist_free_all(w->hdrs);
    free(w->req);
    free(w->buf.p);
    free(w);
}
