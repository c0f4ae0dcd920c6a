/*
 * tollgate trust diff: replays the client certificates the listeners
 * accepted recently (the trust history in the state directory, see
 * core/history.h) against a proposed trust (a new CA bundle, CRL or allow
 * file for one client_cas entry), and lists who would be refused and why,
 * before the change is made.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "config/config.h"
#include "core/diag.h"
#include "core/file.h"
#include "core/history.h"
#include "core/suggest.h"
#include "pki/pki.h"
#include "tls/tls.h"

/* A line of a history file is at most this long (a chain of 64 KiB in
 * base64, and its facts). */
#define LINE_MAX_BYTES (128 * 1024)

struct seen_cert {
    char listener[128];
    char site[256];
    char fingerprint[65];
    char subject[TLS_NAME_MAX + 1];
    char serial[64];
    int64_t first, last;
    X509 *leaf;
    STACK_OF(X509) *chain;
};

struct diff {
    const struct config *cfg;
    const struct cfg_client_ca *entry;
    struct tls_trust *now_trust, *new_trust;
    struct cfg_allow new_allow; /* --allow-file */
    bool has_new_allow;
    struct seen_cert *v;
    size_t n, cap;
    int64_t since;
};

static void seen_fini(struct seen_cert *s)
{
    X509_free(s->leaf);
    sk_X509_pop_free(s->chain, X509_free);
}

/* The site of listener l the record names: the entry whose first name it
 * is, or the listener's own for ""; -1 when the config has no such site
 * any more. */
static int site_of(const struct cfg_listener *l, const char *first_name)
{
    for (size_t i = 0; i < l->tls.n_sites; i++) {
        const struct cfg_site *s = &l->tls.sites[i];
        const char *n = s->n_names > 0 ? s->names[0] : "";
        if (strcmp(n, first_name) == 0)
            return (int)i;
    }
    return -1;
}

/* Whether the diff concerns site (it is mutual under the entry). */
static bool site_in_scope(const struct diff *df, const struct cfg_site *s)
{
    return s->mode == CFG_TLS_MUTUAL && s->client_ca == df->entry;
}

static X509 *der_of(const char *b64)
{
    size_t len = b64 != NULL ? strlen(b64) : 0;
    if (len == 0 || len > 4 * (TLS_MAX_CLIENT_CHAIN / 3 + 1))
        return NULL;
    unsigned char *der = malloc(len);
    if (der == NULL)
        return NULL;
    int n = EVP_DecodeBlock(der, (const unsigned char *)b64, (int)len);
    const unsigned char *p = der;
    X509 *x = n > 0 ? d2i_X509(NULL, &p, n) : NULL;
    free(der);
    return x;
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

/* One line of a history file: merged into df when it is of a site in
 * scope and within the window. */
static void take_line(struct diff *df, const char *line, size_t len)
{
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    if (o == NULL || !json_is_object(o) ||
        json_integer_value(json_object_get(o, "v")) != TG_HISTORY_VERSION)
        goto out;
    const char *lname = jstr(o, "listener"), *site = jstr(o, "site"), *fp = jstr(o, "fingerprint");
    int64_t first = json_integer_value(json_object_get(o, "first"));
    int64_t last = json_integer_value(json_object_get(o, "last"));
    if (last < df->since || strlen(fp) != 64)
        goto out;
    const struct cfg_listener *l = NULL;
    for (size_t i = 0; i < df->cfg->n_listeners && l == NULL; i++)
        if (strcmp(df->cfg->listeners[i].name, lname) == 0)
            l = &df->cfg->listeners[i];
    int s = l != NULL && l->has_tls ? site_of(l, site) : -1;
    if (s < 0 || !site_in_scope(df, &l->tls.sites[s]))
        goto out;
    for (size_t i = 0; i < df->n; i++) {
        struct seen_cert *e = &df->v[i];
        if (strcmp(e->fingerprint, fp) == 0 && strcmp(e->listener, lname) == 0 &&
            strcmp(e->site, site) == 0) {
            e->first = first < e->first ? first : e->first;
            e->last = last > e->last ? last : e->last;
            goto out;
        }
    }
    json_t *chain = json_object_get(o, "chain");
    if (!json_is_array(chain) || json_array_size(chain) == 0 ||
        json_array_size(chain) > TLS_FACTS_MAX_CERTS)
        goto out;
    if (df->n == df->cap) {
        size_t cap = df->cap ? 2 * df->cap : 64;
        struct seen_cert *v = realloc(df->v, cap * sizeof(*v));
        if (v == NULL)
            goto out;
        df->v = v;
        df->cap = cap;
    }
    struct seen_cert e = {.first = first, .last = last};
    snprintf(e.listener, sizeof(e.listener), "%s", lname);
    snprintf(e.site, sizeof(e.site), "%s", site);
    snprintf(e.fingerprint, sizeof(e.fingerprint), "%s", fp);
    snprintf(e.subject, sizeof(e.subject), "%s", jstr(o, "subject"));
    snprintf(e.serial, sizeof(e.serial), "%s", jstr(o, "serial"));
    e.leaf = der_of(json_string_value(json_array_get(chain, 0)));
    e.chain = sk_X509_new_null();
    for (size_t i = 1; e.chain != NULL && i < json_array_size(chain); i++) {
        X509 *x = der_of(json_string_value(json_array_get(chain, i)));
        if (x != NULL && sk_X509_push(e.chain, x) <= 0)
            X509_free(x);
    }
    if (e.leaf == NULL || e.chain == NULL) {
        seen_fini(&e);
        goto out;
    }
    df->v[df->n++] = e;
out:
    json_decref(o);
}

/* Every history file of the state directory; false (said on stderr)
 * when the directory cannot be read. */
static bool read_history(struct diff *df)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/%s", df->cfg->state_dir, TG_HISTORY_DIR);
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return true; /* nothing recorded yet */
        fprintf(stderr, "tollgate trust diff: cannot read %s: %s\n", dir, strerror(errno));
        return false;
    }
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        size_t nl = strlen(ent->d_name);
        if (nl < 7 || strcmp(ent->d_name + nl - 6, ".jsonl") != 0)
            continue;
        char path[4096 + 300];
        snprintf(path, sizeof(path), "%s/%s", dir, ent->d_name);
        char *data = NULL, e[256];
        size_t len = 0;
        if (tg_read_file(path, TG_HISTORY_MAX_FILE, &data, &len, e, sizeof(e)) != TG_OK) {
            fprintf(stderr, "warning: %s: %s (skipped)\n", path, e);
            continue;
        }
        for (size_t i = 0; i < len;) {
            const char *nlp = memchr(data + i, '\n', len - i);
            size_t end = nlp != NULL ? (size_t)(nlp - data) : len;
            if (end - i <= LINE_MAX_BYTES)
                take_line(df, data + i, end - i);
            i = end + 1;
        }
        free(data);
    }
    closedir(d);
    return true;
}

/* The verdict on e of trust t and an allow-list (the site's inline rules
 * and file, the file a proposed one for is_proposed): NULL to accept. A
 * proposed file gives a site without a list one. */
static const char *judge(const struct seen_cert *e, struct tls_trust *t, const struct cfg_site *s,
                         const struct cfg_allow *file, bool is_proposed, int64_t now)
{
    const char *why = tls_trust_verify(t, e->leaf, e->chain, s->verify_depth, now);
    if (why != NULL)
        return why;
    const struct cfg_site *o = s->allow_site;
    if (o == NULL && !is_proposed)
        return NULL;
    if ((o != NULL && tls_allow_matches(&o->allow, e->leaf)) || tls_allow_matches(file, e->leaf))
        return NULL;
    return "not_allowed";
}

static void iso(int64_t t, char *dst, size_t len)
{
    time_t sec = (time_t)t;
    struct tm tm;
    if (gmtime_r(&sec, &tm) == NULL || strftime(dst, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(dst, len, "-");
}

struct opts {
    const char *config, *client_ca, *ca, *crl, *allow_file;
    bool json;
};

static void usage(FILE *out)
{
    fputs("usage: tollgate trust diff -c FILE --client-ca NAME --ca FILE [--crl FILE]\n"
          "                           [--allow-file FILE] [--format text|json]\n"
          "  Replays the client certificates the listeners using client CA NAME accepted\n"
          "  within trust_history (recorded in state_dir) against a proposed trust: the CA\n"
          "  bundle --ca, the CRL --crl (default: the entry's current one) and the allow\n"
          "  file --allow-file (default: each site's current allow-list; with it, a site\n"
          "  lets in what its inline allow rules or the proposed file list).\n"
          "  Lists every client the proposed trust would refuse, and why. Changes nothing.\n"
          "\n"
          "options:\n"
          "  -c, --config FILE   the config (state_dir, trust_history, client_cas)\n"
          "  --client-ca NAME    the client_cas entry to replace\n"
          "  --ca FILE           the proposed CA bundle (PEM)\n"
          "  --crl FILE          the proposed CRL file (PEM or DER)\n"
          "  --allow-file FILE   the proposed allow file (one matcher a line)\n"
          "  --format text|json  text (default) or one JSON object on stdout\n"
          "  -h, --help          this help\n"
          "\n"
          "examples:\n"
          "  tollgate trust diff -c /etc/tollgate/tollgate.yaml --client-ca partners \\\n"
          "      --ca /etc/tollgate/pki/partners-2027.pem\n"
          "  tollgate trust diff -c tollgate.yaml --client-ca partners --ca pki/root.crt \\\n"
          "      --crl new.crl --format json | jq '.refused[].subject'\n"
          "\n"
          "exit codes: 0 nobody recorded would be refused, 1 somebody would (or the config\n"
          "or a file is bad), 2 usage error.\n",
          out);
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const char *const names[] = {"-c",    "--config",     "--client-ca", "--ca",
                                        "--crl", "--allow-file", "--format",    "--help"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        const char **slot = NULL;
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0)
            slot = &o->config;
        else if (strcmp(a, "--client-ca") == 0)
            slot = &o->client_ca;
        else if (strcmp(a, "--ca") == 0)
            slot = &o->ca;
        else if (strcmp(a, "--crl") == 0)
            slot = &o->crl;
        else if (strcmp(a, "--allow-file") == 0)
            slot = &o->allow_file;
        if (slot == NULL && strcmp(a, "--format") != 0) {
            suggest_print_unknown(stderr, "tollgate trust diff", "option", a, names,
                                  TG_ARRAY_LEN(names));
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "tollgate trust diff: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (slot != NULL) {
            *slot = v;
        } else if (strcmp(v, "json") == 0 || strcmp(v, "text") == 0) {
            o->json = strcmp(v, "json") == 0;
        } else {
            fprintf(stderr, "tollgate trust diff: --format takes text or json, not '%s'\n", v);
            return 2;
        }
    }
    if (o->config == NULL || o->client_ca == NULL || o->ca == NULL) {
        fprintf(stderr, "tollgate trust diff: -c, --client-ca and --ca are required\n");
        usage(stderr);
        return 2;
    }
    return -1;
}

static void report(struct diff *df, const struct opts *o, int64_t now, size_t *n_refused)
{
    json_t *doc = json_object(), *refused = json_array();
    size_t n_now = 0;
    *n_refused = 0;
    for (size_t i = 0; i < df->n; i++) {
        struct seen_cert *e = &df->v[i];
        const struct cfg_listener *l = NULL;
        for (size_t k = 0; k < df->cfg->n_listeners && l == NULL; k++)
            if (strcmp(df->cfg->listeners[k].name, e->listener) == 0)
                l = &df->cfg->listeners[k];
        const struct cfg_site *s = &l->tls.sites[site_of(l, e->site)];
        const struct cfg_site *owner = s->allow_site;
        struct cfg_allow cur = {0};
        if (owner != NULL && owner->allow_file != NULL) {
            struct diag d;
            diag_init(&d);
            if (config_allow_file_load(owner->allow_file, &cur, &d) != TG_OK)
                fprintf(stderr, "warning: %s does not load: its list counts as empty\n",
                        owner->allow_file);
            diag_fini(&d);
        }
        const struct cfg_allow *proposed = df->has_new_allow ? &df->new_allow : &cur;
        const char *before = judge(e, df->now_trust, s, &cur, false, now);
        const char *after = judge(e, df->new_trust, s, proposed, df->has_new_allow, now);
        config_allow_fini(&cur);
        if (after == NULL)
            continue;
        (*n_refused)++;
        n_now += before != NULL;
        char first[32], last[32];
        iso(e->first, first, sizeof(first));
        iso(e->last, last, sizeof(last));
        if (o->json) {
            json_array_append_new(
                refused,
                json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "listener", e->listener, "site",
                          e->site, "subject", e->subject, "serial", e->serial, "fingerprint",
                          e->fingerprint, "first_seen", first, "last_seen", last, "reason", after,
                          "refused_now", before != NULL ? json_string(before) : json_null()));
        } else {
            char today[64] = "";
            if (before != NULL)
                snprintf(today, sizeof(today), " (refused today too: %s)", before);
            printf("REFUSED %-18s %s  listener=%s%s%s serial=%s fingerprint=%s last_seen=%s%s\n",
                   after, e->subject, e->listener, e->site[0] ? " site=" : "", e->site,
                   e->serial[0] ? e->serial : "-", e->fingerprint, last, today);
        }
    }
    char since[32];
    iso(df->since, since, sizeof(since));
    if (o->json) {
        json_object_set_new(doc, "client_ca", json_string(df->entry->name));
        json_object_set_new(doc, "proposed",
                            json_pack("{s:s,s:o,s:o}", "ca", o->ca, "crl",
                                      o->crl ? json_string(o->crl) : json_null(), "allow_file",
                                      o->allow_file ? json_string(o->allow_file) : json_null()));
        json_object_set_new(doc, "since", json_string(since));
        json_object_set_new(doc, "clients", json_integer((json_int_t)df->n));
        json_object_set_new(doc, "refused", refused);
        json_object_set_new(doc, "refused_today_too", json_integer((json_int_t)n_now));
        json_dumpf(doc, stdout, JSON_COMPACT);
        fputc('\n', stdout);
    } else {
        json_decref(refused);
        printf("%zu client certificate(s) accepted under client CA \"%s\" since %s; %zu would be "
               "refused by the proposed trust",
               df->n, df->entry->name, since, *n_refused);
        if (n_now > 0)
            printf(" (%zu of them are refused today too)", n_now);
        fputs("\n", stdout);
    }
    json_decref(doc);
}

int pki_cmd_trust(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "diff") != 0) {
        fprintf(stderr, "tollgate trust: unknown subcommand '%s' (expected diff)\n", argv[1]);
        return 2;
    }
    struct opts o = {0};
    int rc = parse_args(argc - 1, argv + 1, &o);
    if (rc >= 0)
        return rc;
    struct diag d;
    diag_init(&d);
    struct config *cfg = NULL;
    struct diff df = {0};
    rc = 1;
    if (config_load(o.config, &cfg, &d) != TG_OK) {
        diag_print(&d, stderr);
        goto out;
    }
    df.cfg = cfg;
    df.entry = config_find_client_ca(cfg, o.client_ca);
    if (df.entry == NULL) {
        fprintf(stderr, "tollgate trust diff: %s has no client_cas entry \"%s\"\n", o.config,
                o.client_ca);
        rc = 2;
        goto out;
    }
    if (cfg->state_dir == NULL || cfg->trust_history_ms == 0) {
        fprintf(stderr,
                "tollgate trust diff: %s keeps no trust history: set state_dir (and "
                "trust_history, default 168h) and let tollgate run a while\n",
                o.config);
        goto out;
    }
    struct cfg_client_ca proposed = *df.entry;
    proposed.ca = (char *)o.ca;
    if (o.crl != NULL)
        proposed.crl = (char *)o.crl;
    struct diag dl;
    diag_init(&dl);
    bool ok = tls_trust_load(cfg, df.entry, &df.now_trust, &dl) == TG_OK &&
              tls_trust_load(cfg, &proposed, &df.new_trust, &dl) == TG_OK;
    if (ok && o.allow_file != NULL) {
        ok = config_allow_file_load(o.allow_file, &df.new_allow, &dl) == TG_OK;
        df.has_new_allow = ok;
    }
    if (!ok) {
        diag_print(&dl, stderr);
        diag_fini(&dl);
        goto out;
    }
    diag_fini(&dl);
    int64_t now = (int64_t)time(NULL);
    df.since = now - (int64_t)(cfg->trust_history_ms / 1000);
    if (!read_history(&df))
        goto out;
    size_t n_refused = 0;
    report(&df, &o, now, &n_refused);
    rc = n_refused > 0 ? 1 : 0;
out:
    for (size_t i = 0; i < df.n; i++)
        seen_fini(&df.v[i]);
    free(df.v);
    config_allow_fini(&df.new_allow);
    tls_trust_unref(df.now_trust);
    tls_trust_unref(df.new_trust);
    config_free(cfg);
    diag_fini(&d);
    return rc;
}
