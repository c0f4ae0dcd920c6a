/*
 * The sites of a listener's tls block: the listener's own settings (site
 * 0) and its sni entries. Each entry takes from the listener what it does
 * not set; names belong to one entry each; a site's allow-list and the
 * keys that only mean something with a mutual site are checked here.
 */
#include "config/internal.h"

#include <stdlib.h>
#include <string.h>

/* Site 0 mirrors the listener's own settings. */
static void fill_own(struct cfg_ctx *c, struct cfg_tls *t)
{
    struct cfg_site *s = &t->sites[0];
    s->mode = t->mode;
    s->client_auth = t->client_auth;
    s->verify_depth = t->verify_depth;
    s->certificates = t->certificates;
    s->n_certificates = t->n_certificates;
    s->client_ca = t->mode == CFG_TLS_MUTUAL ? t->client_ca : NULL;
    s->mode_pos = t->mode_pos;
    bool has_allow = cfg_was_set(c, &s->allow) || s->allow_file != NULL;
    s->allow_site = has_allow ? s : NULL;
    if (has_allow && t->mode != CFG_TLS_MUTUAL && !cfg_was_bad(c, &t->mode)) {
        const void *field = cfg_was_set(c, &s->allow) ? (const void *)&s->allow : &s->allow_file;
        cfg_error_at(c, field,
                     "an allow-list judges client certificates: only used with mode: mutual");
    }
    if (s->client_ca_next_name == NULL)
        return;
    if (t->mode != CFG_TLS_MUTUAL) {
        if (!cfg_was_bad(c, &t->mode))
            cfg_error_at(c, &s->client_ca_next_name,
                         "only used with mode: mutual (it tries a client CA that will replace "
                         "client_ca)");
        return;
    }
    s->client_ca_next = cfg_ref_client_ca(c, &s->client_ca_next_name);
}

/* client_ca_next of a mutual entry: its own, or the listener's when the
 * entry also takes the listener's client_ca. */
static void fill_next(struct cfg_ctx *c, struct cfg_tls *t, struct cfg_site *s)
{
    if (s->client_ca_next_name != NULL) {
        s->client_ca_next = cfg_ref_client_ca(c, &s->client_ca_next_name);
        return;
    }
    if (s->client_ca_name == NULL && !cfg_was_set(c, &s->client_ca_name))
        s->client_ca_next = t->sites[0].client_ca_next;
}

static void resolve_certificates(struct cfg_ctx *c, struct cfg_site *s)
{
    for (size_t i = 0; i < s->n_certificates; i++) {
        s->certificates[i] = cfg_ref_certificate(c, &s->certificate_names[i]);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(s->certificate_names[i], s->certificate_names[j]) == 0) {
                cfg_error_at(c, &s->certificate_names[i], "certificate \"%.64s\" is listed twice",
                             s->certificate_names[i]);
                break;
            }
        }
    }
}

/* An sni entry: what it does not set comes from the listener. */
static void fill_entry(struct cfg_ctx *c, struct cfg_tls *t, struct cfg_site *s)
{
    if (!cfg_was_set(c, &s->mode))
        s->mode = t->mode;
    if (!cfg_was_set(c, &s->client_auth))
        s->client_auth = t->client_auth;
    if (!cfg_was_set(c, &s->verify_depth))
        s->verify_depth = t->verify_depth;
    if (s->certificate_names != NULL) {
        resolve_certificates(c, s);
    } else {
        s->certificates = t->certificates;
        s->n_certificates = t->n_certificates;
    }
    bool has_allow = cfg_was_set(c, &s->allow) || s->allow_file != NULL;
    if (cfg_was_bad(c, &s->mode))
        return;
    if (s->mode != CFG_TLS_MUTUAL) {
        const void *fields[] = {&s->client_ca_name, &s->client_auth, &s->verify_depth,
                                &s->allow,          &s->allow_file,  &s->client_ca_next_name};
        for (size_t i = 0; i < TG_ARRAY_LEN(fields); i++) {
            if (cfg_was_set(c, fields[i]))
                cfg_error_at(c, fields[i], "only used with mode: mutual (this entry is one-way)");
        }
        return;
    }
    if (s->client_ca_name != NULL)
        s->client_ca = cfg_ref_client_ca(c, &s->client_ca_name);
    else if (!cfg_was_set(c, &s->client_ca_name))
        s->client_ca = t->mode == CFG_TLS_MUTUAL ? t->client_ca : NULL;
    if (s->client_ca == NULL && !cfg_was_set(c, &s->client_ca_name) &&
        !cfg_was_set(c, &t->client_ca_name))
        cfg_error_in(c, s, "client_ca",
                     "a mutual entry needs client_ca (here or on the listener): the CA that "
                     "signs its clients' certificates, from client_cas");
    s->allow_site = has_allow ? s : t->sites[0].allow_site;
    fill_next(c, t, s);
}

/* "listeners[0].tls.sni[1]" of the entry s, for messages. */
static const char *site_path(struct cfg_ctx *c, const struct cfg_site *s)
{
    const struct cfg_rec *r = cfg_rec_find(c, s, true);
    return r != NULL && r->path != NULL ? r->path : "an sni entry";
}

/*
 * Each name belongs to one entry: a name twice is refused. A wildcard
 * that also covers a name of another entry (an exact name, or a longer
 * wildcard) is allowed (the more specific wins), and said, so that nobody
 * reads the file the other way.
 */
static void check_names(struct cfg_ctx *c, struct cfg_tls *t)
{
    for (size_t i = 1; i < t->n_sites; i++) {
        struct cfg_site *s = &t->sites[i];
        for (size_t k = 0; k < s->n_names; k++) {
            const char *n = s->names[k];
            for (size_t j = 1; j <= i; j++) {
                const struct cfg_site *o = &t->sites[j];
                size_t end = j == i ? k : o->n_names;
                for (size_t m = 0; m < end; m++) {
                    if (strcmp(o->names[m], n) != 0)
                        continue;
                    if (j == i)
                        cfg_error_at(c, &s->names[k], "\"%.64s\" is listed twice in this entry", n);
                    else
                        cfg_error_at(c, &s->names[k],
                                     "\"%.64s\" is already a name of %s: each name belongs to "
                                     "one entry",
                                     n, site_path(c, o));
                }
            }
        }
    }
    for (size_t i = 1; i < t->n_sites; i++) {
        const struct cfg_site *s = &t->sites[i];
        for (size_t k = 0; k < s->n_names; k++) {
            const char *w = s->names[k];
            if (w[0] != '*')
                continue;
            for (size_t j = 1; j < t->n_sites; j++) {
                const struct cfg_site *o = &t->sites[j];
                for (size_t m = 0; j != i && m < o->n_names; m++) {
                    const char *n = o->names[m];
                    size_t rest = strlen(w + 1);
                    const char *tail = n[0] == '*' ? n + 1 : n;
                    size_t tl = strlen(tail);
                    if (tl <= rest || strcmp(tail + tl - rest, w + 1) != 0)
                        continue;
                    cfg_warn_at(c, &o->names[m],
                                "\"%.64s\" is also covered by \"%.64s\" of %s: %s, so this "
                                "entry judges it and the wildcard's entry judges the other names "
                                "below %.64s",
                                n, w, site_path(c, s),
                                n[0] == '*' ? "the longer wildcard wins" : "exact names win",
                                w + 2);
                }
            }
        }
    }
}

/* An allow_file is loaded as the workers will load it: every error of
 * it with its own file:line:col. */
static void check_allow_file(struct cfg_ctx *c, struct cfg_site *s)
{
    if (s->allow_file == NULL)
        return;
    struct cfg_allow tmp = {0};
    if (config_allow_file_load(s->allow_file, &tmp, c->d) != TG_OK)
        cfg_error_at(c, &s->allow_file, "the allow file does not load (its errors are above)");
    config_allow_fini(&tmp);
}

/* Keys of the listener that only mean something when a site is mutual. */
static void check_mutual_keys(struct cfg_ctx *c, struct cfg_listener *l)
{
    struct cfg_tls *t = &l->tls;
    bool any_mutual = config_tls_any_mutual(t, false);
    bool any_optional = config_tls_any_mutual(t, true);
    const void *fields[] = {&t->on_revoke, &t->on_expiry};
    for (size_t i = 0; !any_mutual && i < TG_ARRAY_LEN(fields); i++) {
        if (cfg_was_set(c, fields[i]))
            cfg_error_at(c, fields[i],
                         "only used with mode: mutual (neither the listener nor an sni entry is "
                         "mutual)");
    }
    if (t->on_reject != NULL && (l->protocol != CFG_PROTO_HTTPS || !any_optional))
        cfg_error_at(c, &t->on_reject,
                     "only used with protocol https, mode mutual and client_auth optional (a "
                     "refused handshake cannot show a page)");
    if (cfg_was_set(c, &t->client_cert_header) && (l->protocol != CFG_PROTO_HTTPS || !any_mutual))
        cfg_error_at(c, &t->client_cert_header,
                     "only used with protocol https and mode mutual (it says which client "
                     "certificate headers are sent to the backend)");
    /* tcp_ssl relays the bytes of every client that optional lets
     * through; only the SSL TLV of PROXY v2 tells the target which ones
     * were verified (https has X-Client-Verify). Without it the listener
     * trusts everybody while looking as if it checked. */
    if (l->protocol != CFG_PROTO_TCP_SSL || l->proxy_protocol == CFG_PROXY_V2 ||
        !cfg_was_set(c, &l->protocol) || cfg_was_bad(c, &l->proxy_protocol))
        return;
    for (size_t i = 0; i < t->n_sites; i++) {
        struct cfg_site *s = &t->sites[i];
        if (s->mode != CFG_TLS_MUTUAL || s->client_auth != CFG_CLIENT_AUTH_OPTIONAL)
            continue;
        static const char why[] =
            "optional relays clients without a valid certificate, and without PROXY v2 the "
            "targets cannot tell them apart: set proxy_protocol: v2 (its SSL TLV carries the "
            "verdict) or client_auth: required";
        if (i == 0 || cfg_was_set(c, &s->client_auth))
            cfg_error_at(c, i == 0 ? (const void *)&t->client_auth : &s->client_auth, "%s", why);
        else
            cfg_error_in(c, s, "client_auth", "%s (taken from the listener)", why);
        return;
    }
}

/* An allow-list written empty refuses every client: allowed (it fails
 * closed) but said. */
static void check_empty_allow(struct cfg_ctx *c, const struct cfg_site *s)
{
    if (s->allow.n_rules == 0 && s->allow_file == NULL && cfg_was_set(c, &s->allow) &&
        s->mode == CFG_TLS_MUTUAL)
        cfg_warn_at(c, &s->allow, "an empty allow-list lets no client in");
}

void cfg_check_sites(struct cfg_ctx *c, struct cfg_listener *l)
{
    struct cfg_tls *t = &l->tls;
    if (t->sites == NULL || t->n_sites == 0)
        return;
    if (t->n_sites > CFG_MAX_SITES)
        cfg_error_at(c, &t->n_sites, "%zu sni entries: at most %d", t->n_sites - 1,
                     CFG_MAX_SITES - 1);
    fill_own(c, t);
    for (size_t i = 1; i < t->n_sites; i++)
        fill_entry(c, t, &t->sites[i]);
    check_names(c, t);
    for (size_t i = 0; i < t->n_sites; i++) {
        check_allow_file(c, &t->sites[i]);
        check_empty_allow(c, &t->sites[i]);
    }
    check_mutual_keys(c, l);
}
