/* fleet: the block of a node file (tollgate run -c node.yaml), and the
 * checks of the names a fleet uses, shared with the command line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/internal.h"

bool config_fleet_prefix_ok(char *prefix, char *err, size_t err_len)
{
    size_t n = strlen(prefix);
    /* Checked before the trailing slash goes: "/a//" is not "/a/". */
    if (strstr(prefix, "//") != NULL) {
        snprintf(err, err_len, "a prefix holds printable characters, no space, no //");
        return false;
    }
    if (n > 1 && prefix[n - 1] == '/')
        prefix[--n] = '\0';
    if (n < 2 || prefix[0] != '/' || n > CFG_FLEET_PREFIX_MAX) {
        snprintf(err, err_len, "a prefix starts with / and holds 1 to %d more bytes",
                 CFG_FLEET_PREFIX_MAX - 1);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)prefix[i];
        if (ch <= 0x20 || ch >= 0x7f || (ch == '/' && prefix[i + 1] == '/')) {
            snprintf(err, err_len, "a prefix holds printable characters, no space, no //");
            return false;
        }
    }
    return true;
}

bool config_fleet_node_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > CFG_FLEET_NODE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        if (!ok)
            return false;
    }
    return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

bool config_fleet_url_ok(const char *u)
{
    size_t scheme = strncmp(u, "http://", 7) == 0 ? 7 : strncmp(u, "https://", 8) == 0 ? 8 : 0;
    size_t n = strlen(u);
    return scheme != 0 && n > scheme && n <= 512 && strpbrk(u, " \t\r\n?#") == NULL;
}

static void parse_etcd(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_fleet *f)
{
    if (!cfg_is_seq(c, v))
        return;
    size_t n = cfg_count(v);
    if (n == 0 || n > CFG_FLEET_URLS_MAX) {
        cfg_error(c, v, "expected 1 to %d etcd client URLs", CFG_FLEET_URLS_MAX);
        return;
    }
    f->etcd = cfg_calloc(c, n, sizeof(*f->etcd));
    if (f->etcd == NULL)
        return;
    struct cfg_val item;
    for (size_t i = 0; cfg_seq_next(c, v, &i, &item);) {
        char *u = NULL;
        if (!cfg_get_str(c, &item, &u))
            continue;
        if (!config_fleet_url_ok(u)) {
            cfg_error(c, &item, "\"%.100s\" is not an http:// or https:// URL (no query)", u);
            free(u);
            continue;
        }
        f->etcd[f->n_etcd++] = u;
    }
}

void cfg_parse_fleet(struct cfg_ctx *c, const struct cfg_val *v)
{
    static const char *const keys[] = {"etcd",        "prefix",    "node",
                                       "secret_file", "cache_dir", "lease_ttl",
                                       "etcd_ca",     "etcd_cert", "etcd_key"};
    if (!cfg_is_map(c, v))
        return;
    struct cfg_fleet *f = cfg_calloc(c, 1, sizeof(*f));
    if (f == NULL)
        return;
    c->cfg->fleet = f;
    f->pos = cfg_pos_of(v);
    f->lease_ttl = CFG_FLEET_LEASE_TTL;
    bool has_etcd = false, has_prefix = false;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        char err[128];
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            has_etcd = true;
            parse_etcd(c, &kv, f);
            break;
        case 1:
            has_prefix = true;
            if (cfg_get_str(c, &kv, &f->prefix) &&
                !config_fleet_prefix_ok(f->prefix, err, sizeof(err)))
                cfg_error(c, &kv, "%s", err);
            break;
        case 2:
            if (cfg_get_str(c, &kv, &f->node) && !config_fleet_node_ok(f->node))
                cfg_error(c, &kv, "1 to %d of A-Z a-z 0-9 . _ -", CFG_FLEET_NODE_MAX);
            break;
        case 3:
            (void)cfg_get_path(c, &kv, &f->secret_file);
            break;
        case 4:
            (void)cfg_get_path(c, &kv, &f->cache_dir);
            break;
        case 5:
            (void)cfg_get_uint(c, &kv, 2, 300, &f->lease_ttl);
            break;
        case 6:
            (void)cfg_get_path(c, &kv, &f->etcd_ca);
            break;
        case 7:
            (void)cfg_get_path(c, &kv, &f->etcd_cert);
            break;
        case 8:
            (void)cfg_get_path(c, &kv, &f->etcd_key);
            break;
        default:
            break;
        }
    }
    if (!has_etcd)
        cfg_error(c, v, "etcd: required key is missing (expected a list of client URLs)");
    if (!has_prefix)
        cfg_error(c, v,
                  "prefix: required key is missing (expected the fleet's key prefix, such "
                  "as /tollgate/prod)");
}
