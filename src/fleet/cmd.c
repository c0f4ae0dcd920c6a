/* tollgate fleet push | history | rollback | status */
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/file.h"
#include "core/suggest.h"
#include "fleet/fleet.h"
#include "fleet/internal.h"
#include "fleet/rev.h"
#include "fleet/seal.h"
#include "tls/tls.h"

static void usage(FILE *out)
{
    fputs("usage: tollgate fleet push -c FILE --etcd URLS --prefix P [--base REV] [-m TEXT]\n"
          "                            [--with-keys --secret-file FILE]\n"
          "       tollgate fleet history --etcd URLS --prefix P [--format text|json]\n"
          "       tollgate fleet rollback REV --etcd URLS --prefix P [--base REV] [-m TEXT]\n"
          "       tollgate fleet status --etcd URLS --prefix P [--format text|json]\n"
          "       (each also takes [--etcd-ca FILE] [--etcd-cert FILE --etcd-key FILE])\n"
          "  A fleet is several tollgate nodes sharing one config, one set of session\n"
          "  ticket keys and one view of themselves through etcd (docs/FLEET.md).\n"
          "\n"
          "  push      checks the config as \"tollgate check\" does, then stores it with\n"
          "            every file it reads as the next revision, which every node of\n"
          "            the prefix applies; keys stay on each node unless --with-keys\n"
          "  history   lists the revisions: number, time, who, digest, message\n"
          "  rollback  pushes revision REV again as the next revision\n"
          "  status    every node: the revision it runs, its last error, and the\n"
          "            health of each target as that node sees it\n"
          "\n"
          "options:\n"
          "  --etcd URLS          etcd client URLs, comma-separated (http://host:2379)\n"
          "  --prefix P           the fleet's key prefix in etcd (/tollgate/prod)\n"
          "  -c, --config FILE    the config to push\n"
          "  --base REV           push only if the fleet is still at revision REV (the\n"
          "                       one the change was made from); 0 for an empty prefix\n"
          "  -m, --message TEXT   a note stored with the revision\n"
          "  --with-keys          also push private keys, password files, the ticket\n"
          "                       key file and the admin token, sealed with the secret\n"
          "  --secret-file FILE   the fleet secret (as the nodes' --secret-file)\n"
          "  --etcd-ca FILE       the CA bundle that verifies https:// etcd endpoints\n"
          "  --etcd-cert FILE     a client certificate for etcd's --client-cert-auth,\n"
          "  --etcd-key FILE      and its key\n"
          "  --format text|json   history and status: text (default) or one JSON object\n"
          "  -h, --help           this help\n"
          "\n"
          "examples:\n"
          "  tollgate fleet push -c tollgate.yaml --etcd http://10.0.0.5:2379 \\\n"
          "      --prefix /tollgate/prod -m \"new CRL\"\n"
          "  tollgate fleet status --etcd http://10.0.0.5:2379 --prefix /tollgate/prod\n"
          "  tollgate fleet rollback 41 --etcd http://10.0.0.5:2379 --prefix /tollgate/prod\n"
          "\n"
          "exit codes: 0 done (status: every node runs the newest revision); 1 refused\n"
          "config, conflicting push, etcd unreachable, or (status) nodes that differ;\n"
          "2 usage error.\n",
          out);
}

struct args {
    const char *sub;
    char *etcd;
    char prefix[256];
    const char *config, *message, *secret_file, *format;
    struct etcd_tls tls;
    int64_t base; /* -1: none */
    int64_t rev;  /* rollback */
    bool with_keys;
};

static bool parse_i64(const char *s, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || v < 0)
        return false;
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, struct args *a)
{
    static const char *const opts[] = {"--etcd",        "--prefix", "-c",        "--config",
                                       "--base",        "-m",       "--message", "--with-keys",
                                       "--secret-file", "--format", "--etcd-ca", "--etcd-cert",
                                       "--etcd-key",    "--help"};
    static const char *const subs[] = {"push", "history", "rollback", "status", "--help"};
    memset(a, 0, sizeof(*a));
    a->base = -1;
    a->format = "text";
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    a->sub = argv[1];
    if (strcmp(a->sub, "-h") == 0 || strcmp(a->sub, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    bool known = false;
    for (size_t i = 0; i + 1 < TG_ARRAY_LEN(subs); i++)
        known = known || strcmp(a->sub, subs[i]) == 0;
    if (!known)
        return suggest_usage_error(stderr, "fleet", a->sub, subs, TG_ARRAY_LEN(subs));
    const char *prefix = NULL, *base = NULL;
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        const char **dst = NULL;
        if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(o, "--with-keys") == 0) {
            a->with_keys = true;
            continue;
        }
        if (strcmp(o, "--etcd") == 0)
            dst = (const char **)&a->etcd;
        else if (strcmp(o, "--prefix") == 0)
            dst = &prefix;
        else if (strcmp(o, "-c") == 0 || strcmp(o, "--config") == 0)
            dst = &a->config;
        else if (strcmp(o, "--base") == 0)
            dst = &base;
        else if (strcmp(o, "-m") == 0 || strcmp(o, "--message") == 0)
            dst = &a->message;
        else if (strcmp(o, "--secret-file") == 0)
            dst = &a->secret_file;
        else if (strcmp(o, "--format") == 0)
            dst = &a->format;
        else if (strcmp(o, "--etcd-ca") == 0)
            dst = &a->tls.ca_file;
        else if (strcmp(o, "--etcd-cert") == 0)
            dst = &a->tls.cert_file;
        else if (strcmp(o, "--etcd-key") == 0)
            dst = &a->tls.key_file;
        else if (strcmp(a->sub, "rollback") == 0 && a->rev == 0 && o[0] != '-') {
            if (!parse_i64(o, &a->rev) || a->rev == 0) {
                fprintf(stderr, "tollgate fleet rollback: \"%s\" is not a revision number\n", o);
                return 2;
            }
            continue;
        } else {
            return suggest_usage_error(stderr, "fleet", o, opts, TG_ARRAY_LEN(opts));
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "tollgate fleet: %s needs a value\n", o);
            return 2;
        }
        *dst = argv[++i];
    }
    char err[256];
    if (a->etcd == NULL || prefix == NULL) {
        fprintf(stderr, "tollgate fleet %s: give --etcd URLS and --prefix P\n", a->sub);
        return 2;
    }
    snprintf(a->prefix, sizeof(a->prefix), "%s", prefix);
    if (strlen(prefix) >= sizeof(a->prefix) || !fleet_prefix_ok(a->prefix, err, sizeof(err))) {
        fprintf(stderr, "tollgate fleet: --prefix %s: %s\n", prefix, err);
        return 2;
    }
    if (base != NULL && !parse_i64(base, &a->base)) {
        fprintf(stderr, "tollgate fleet: --base %s: not a revision number\n", base);
        return 2;
    }
    if (strcmp(a->format, "text") != 0 && strcmp(a->format, "json") != 0) {
        fprintf(stderr, "tollgate fleet: --format is text or json\n");
        return 2;
    }
    if (strcmp(a->sub, "push") == 0 && a->config == NULL) {
        fprintf(stderr, "tollgate fleet push: which config? give -c FILE\n");
        return 2;
    }
    if (strcmp(a->sub, "rollback") == 0 && a->rev == 0) {
        fprintf(stderr, "tollgate fleet rollback: which revision? give its number\n");
        return 2;
    }
    if (a->with_keys && a->secret_file == NULL) {
        fprintf(stderr, "tollgate fleet push: --with-keys seals the keys: give --secret-file\n");
        return 2;
    }
    return -1;
}

static struct etcd *connect_etcd(const struct args *a)
{
    struct fleet_opts o;
    char err[256];
    memset(&o, 0, sizeof(o));
    if (!fleet_parse_urls(a->etcd, &o, err, sizeof(err))) {
        fprintf(stderr, "tollgate fleet: --etcd: %s\n", err);
        return NULL;
    }
    struct etcd *e = etcd_new(o.urls, o.n_urls, FLEET_TIMEOUT_MS, &a->tls);
    if (e == NULL)
        fprintf(stderr, "tollgate fleet: out of memory\n");
    return e;
}

static bool read_head(struct etcd *e, const struct args *a, struct fleet_head *head)
{
    char err[512];
    if (fleet_head_read(e, a->prefix, head, err, sizeof(err)) == TG_OK)
        return true;
    fprintf(stderr, "tollgate fleet %s: %s\n", a->sub, err);
    return false;
}

static void who(char *dst, size_t len)
{
    char host[256] = "?";
    const struct passwd *pw = getpwuid(getuid());
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    snprintf(dst, len, "%s@%s", pw ? pw->pw_name : "?", host);
}

struct push_ctx {
    struct etcd *e;
    const char *prefix;
    const struct fleet_secret *secret;
    char err[512];
};

/* Stores one shared file under P/files/SHA (sealed when it is a key). */
static enum tg_status store_file(void *arg, const struct fleet_file *f, const uint8_t *data)
{
    struct push_ctx *p = arg;
    char key[512];
    snprintf(key, sizeof(key), "%s/files/%s", p->prefix, f->sha);
    char *sealed = NULL;
    const void *v = data;
    size_t len = f->size;
    if (f->is_secret) {
        sealed = fleet_seal(p->secret, key, data, f->size);
        if (sealed == NULL) {
            snprintf(p->err, sizeof(p->err), "%s: cannot seal", f->path);
            return TG_E_INTERNAL;
        }
        v = sealed;
        len = strlen(sealed);
    }
    enum tg_status st = etcd_put(p->e, key, v, len, 0);
    if (st != TG_OK)
        snprintf(p->err, sizeof(p->err), "%s: %s", f->path, etcd_error(p->e));
    free(sealed);
    return st;
}

/* Stores r as the next revision on top of head (compare and swap). */
static int commit_rev(struct etcd *e, const struct args *a, struct fleet_head *head,
                      struct fleet_rev *r)
{
    char by[300];
    who(by, sizeof(by));
    if (head->rev >= INT64_MAX - 1) {
        fprintf(stderr, "tollgate fleet %s: %s: revision numbers are used up\n", a->sub, a->prefix);
        return 1;
    }
    r->rev = head->rev + 1;
    if (head->mod_rev == 0) {
        /* No head, but maybe revisions (a head deleted by hand): never
         * reuse a number. */
        json_t *log = NULL;
        char err[256];
        if (fleet_log_read(e, a->prefix, 1, &log, err, sizeof(err)) == TG_OK)
            for (size_t i = 0; i < json_array_size(log); i++) {
                json_int_t v = json_integer_value(json_object_get(json_array_get(log, i), "rev"));
                if (v >= r->rev && v < INT64_MAX - 1)
                    r->rev = v + 1;
            }
        json_decref(log);
    }
    r->parent = head->rev;
    r->at = (int64_t)time(NULL);
    free(r->by);
    r->by = strndup(by, FLEET_TEXT_MAX);
    if (a->message != NULL && r->message != NULL && r->message != a->message) {
        free(r->message);
        r->message = NULL;
    }
    if (r->message == NULL)
        r->message = strndup(a->message ? a->message : "", FLEET_TEXT_MAX);
    fleet_rev_digest(r);
    if (head->rev > 0 && strcmp(head->sha, r->sha) == 0 && strcmp(a->sub, "push") == 0) {
        printf("%s: revision %" PRId64 " already holds this config; nothing pushed\n", a->prefix,
               head->rev);
        return 0;
    }
    char err[600];
    if (fleet_commit(e, a->prefix, head, r, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tollgate fleet %s: %s\n", a->sub, err);
        return 1;
    }
    printf("%s: pushed revision %" PRId64 " (sha256 %.12s) on top of %" PRId64
           "; %zu files shared, %zu node-local\n",
           a->prefix, r->rev, r->sha, r->parent, r->n_files, r->n_local);
    return 0;
}

static int cmd_push(const struct args *a)
{
    char abs[PATH_MAX];
    if (realpath(a->config, abs) == NULL) {
        fprintf(stderr, "tollgate fleet push: %s: cannot read: %m\n", a->config);
        return 1;
    }
    struct diag d;
    struct config *cfg = NULL;
    diag_init(&d);
    if (config_load(abs, &cfg, &d) == TG_OK)
        tls_config_check(cfg, &d);
    diag_print(&d, stderr);
    if (diag_has_errors(&d)) {
        fprintf(stderr, "%s: %zu error%s; nothing pushed\n", abs, d.n_errors,
                d.n_errors == 1 ? "" : "s");
        config_free(cfg);
        diag_fini(&d);
        return 1;
    }
    diag_fini(&d);
    diag_init(&d);
    int rc = 1;
    struct fleet_secret secret;
    struct fleet_rev r;
    struct fleet_head head;
    memset(&r, 0, sizeof(r));
    struct etcd *e = connect_etcd(a);
    char err[256];
    if (a->secret_file != NULL &&
        fleet_secret_load(a->secret_file, &secret, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tollgate fleet push: %s\n", err);
        goto out;
    }
    if (e == NULL || !read_head(e, a, &head))
        goto out;
    if (a->base >= 0 && a->base != head.rev) {
        fprintf(stderr,
                "tollgate fleet push: %s is at revision %" PRId64 " (by %s), not %" PRId64
                "; nothing pushed: look at what changed (fleet history) and push again\n",
                a->prefix, head.rev, head.by, a->base);
        goto out;
    }
    struct push_ctx p = {e, a->prefix, a->secret_file ? &secret : NULL, ""};
    r.config_path = strdup(abs);
    char *text = NULL;
    if (r.config_path == NULL ||
        tg_read_file(abs, FLEET_REV_MAX, &text, &r.config_len, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tollgate fleet push: %s: %s\n", abs, err);
        goto out;
    }
    r.config_text = text;
    if (fleet_rev_collect(cfg, a->with_keys, &r, store_file, &p, &d) != TG_OK) {
        diag_print(&d, stderr);
        if (p.err[0])
            fprintf(stderr, "tollgate fleet push: %s\n", p.err);
        fprintf(stderr, "%s: nothing pushed\n", abs);
        goto out;
    }
    rc = commit_rev(e, a, &head, &r);
out:
    if (a->secret_file != NULL)
        fleet_secret_wipe(&secret);
    fleet_rev_free(&r);
    etcd_free(e);
    config_free(cfg);
    diag_fini(&d);
    return rc;
}

static int cmd_rollback(const struct args *a)
{
    struct etcd *e = connect_etcd(a);
    struct fleet_head head;
    struct fleet_rev r;
    char err[256];
    int rc = 1;
    memset(&r, 0, sizeof(r));
    if (e == NULL || !read_head(e, a, &head))
        goto out;
    if (a->base >= 0 && a->base != head.rev) {
        fprintf(stderr, "tollgate fleet rollback: %s is at revision %" PRId64 ", not %" PRId64 "\n",
                a->prefix, head.rev, a->base);
        goto out;
    }
    if (fleet_rev_read(e, a->prefix, a->rev, &r, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tollgate fleet rollback: revision %" PRId64 ": %s\n", a->rev, err);
        goto out;
    }
    char note[FLEET_TEXT_MAX + 64];
    snprintf(note, sizeof(note), "rollback to %" PRId64 "%s%.*s", a->rev, a->message ? ": " : "",
             FLEET_TEXT_MAX - 40, a->message ? a->message : "");
    free(r.message);
    r.message = strdup(note);
    struct args b = *a;
    b.message = NULL;
    rc = commit_rev(e, &b, &head, &r);
out:
    fleet_rev_free(&r);
    etcd_free(e);
    return rc;
}

static void print_time(int64_t t, char *dst, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL || strftime(dst, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(dst, len, "-");
}

static int cmd_history(const struct args *a)
{
    struct etcd *e = connect_etcd(a);
    struct fleet_head head;
    json_t *log = NULL;
    int rc = 1;
    char err[256];
    if (e == NULL || !read_head(e, a, &head))
        goto out;
    if (fleet_log_read(e, a->prefix, FLEET_HISTORY_MAX, &log, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tollgate fleet history: %s\n", err);
        goto out;
    }
    if (strcmp(a->format, "json") == 0) {
        json_t *j = json_pack("{s:I,s:O}", "head", (json_int_t)head.rev, "revisions", log);
        json_dumpf(j, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(j);
        rc = 0;
        goto out;
    }
    fleet_json_printable(log);
    printf("%-4s %-8s %-20s %-24s %-12s %s\n", "", "REV", "WHEN", "BY", "SHA256", "MESSAGE");
    for (size_t i = 0; i < json_array_size(log); i++) {
        const json_t *x = json_array_get(log, i);
        json_int_t rev = json_integer_value(json_object_get(x, "rev"));
        char when[32];
        print_time(json_integer_value(json_object_get(x, "at")), when, sizeof(when));
        printf("%-4s %-8" JSON_INTEGER_FORMAT " %-20s %-24.24s %-12.12s %s\n",
               rev == head.rev ? "head" : "", rev, when,
               json_string_value(json_object_get(x, "by")),
               json_string_value(json_object_get(x, "sha256")),
               json_string_value(json_object_get(x, "message")));
    }
    if (json_array_size(log) == 0)
        printf("(no revision under %s)\n", a->prefix);
    rc = 0;
out:
    json_decref(log);
    etcd_free(e);
    return rc;
}

int fleet_cmd(int argc, char **argv)
{
    struct args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (strcmp(a.sub, "push") == 0)
        return cmd_push(&a);
    if (strcmp(a.sub, "rollback") == 0)
        return cmd_rollback(&a);
    if (strcmp(a.sub, "history") == 0)
        return cmd_history(&a);
    struct etcd *e = connect_etcd(&a);
    rc = e != NULL ? fleet_status_print(e, a.prefix, strcmp(a.format, "json") == 0) : 1;
    etcd_free(e);
    return rc;
}
