/* A fleet node's master side: the revision it starts from, applying the
 * revisions its agent brings, the node's entry, the fleet's view. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "fleet/agent.h"
#include "fleet/b64.h"
#include "fleet/cache.h"
#include "fleet/internal.h"
#include "master/internal.h"

#define STATE_EVERY    1.0 /* seconds between two looks at the node's state */
#define AGENT_RESPAWN  1.0
#define ERROR_TEXT_MAX 600

struct fleet_node {
    struct fleet_opts o;
    struct ev_loop *loop;
    struct fleet_node_ops ops;
    struct fleet_rev current; /* running; rev 0 before the first */
    struct fleet_rev pending; /* the one being loaded; rev 0 when none */
    bool is_from_cache;       /* started from the cache: etcd was unreachable */
    int64_t error_rev;        /* the last revision refused; 0: none since */
    char error[ERROR_TEXT_MAX];
    int64_t error_at;
    bool is_waiting; /* the pending revision waits for old generations to drain */
    int fd;          /* the master's end; -1 without an agent */
    pid_t agent;
    ev_tstamp agent_started, spawn_after;
    ev_io io;
    ev_timer tick;
    ev_child child;
    struct fleet_msg_reader rd;
    json_t *view; /* the fleet as the agent last read it; NULL before */
    char etcd_state[8];
    bool is_name_taken; /* another node writes this node's entry */
    char etcd_error[512];
    json_t *last_state;
};

/*
 * The first error of d, as one line, for the node's entry, which leaves
 * the node (etcd, fleet status). An error in the pushed config (config,
 * the revision's config path) or in no file says all; one in another file
 * names only where: the file is the node's own (a key, or a path the
 * revision did not ship), and a parser may quote its contents. The node's
 * log has the whole message.
 */
static void first_error(const struct diag *d, const char *config, char *dst, size_t len)
{
    snprintf(dst, len, "refused");
    for (size_t i = 0; i < d->n; i++) {
        const struct diag_entry *e = &d->v[i];
        if (e->level != DIAG_ERROR)
            continue;
        if (e->file == NULL || (config != NULL && strcmp(e->file, config) == 0))
            diag_format(d, i, dst, len);
        else
            snprintf(dst, len, "%.400s:%d:%d: %s: refused (the node's log says why)", e->file,
                     e->line, e->col, e->key ? e->key : "-");
        return;
    }
}

static void log_diag_lines(const struct diag *d, int64_t rev)
{
    char line[1024];
    for (size_t i = 0; i < d->n; i++) {
        diag_format(d, i, line, sizeof(line));
        if (d->v[i].level == DIAG_ERROR)
            log_err("event=config_error revision=%" PRId64 " %s", rev, line);
    }
}

/* Checks revision r as "tollgate check" would, on the cached copies of its
 * files, without touching what runs. */
static bool staged_ok(struct fleet_node *n, const struct fleet_rev *r, struct diag *d)
{
    struct config *cfg = NULL;
    if (fleet_cache_load(n->o.cache_dir, r, true, &cfg, d) == TG_OK)
        tls_config_check(cfg, d);
    config_free(cfg);
    return !diag_has_errors(d);
}

static void set_error(struct fleet_node *n, int64_t rev, const char *msg)
{
    n->error_rev = rev;
    snprintf(n->error, sizeof(n->error), "%s", msg);
    n->error_at = (int64_t)time(NULL);
}

/* Takes revision rev from the cache as the next to run: checked, then its
 * files installed. False with the reason in d (and the node's error). */
static bool prepare(struct fleet_node *n, int64_t rev, const char *sha, struct diag *d)
{
    char err[512];
    fleet_rev_free(&n->pending);
    if (fleet_cache_read(n->o.cache_dir, rev, &n->pending, err, sizeof(err)) != TG_OK) {
        diag_add(d, DIAG_ERROR, NULL, 0, 0, NULL, "revision %" PRId64 ": %s", rev, err);
    } else if (sha != NULL && strcmp(sha, n->pending.sha) != 0) {
        diag_add(d, DIAG_ERROR, NULL, 0, 0, NULL,
                 "revision %" PRId64 ": the cache holds sha256 %.12s, not %.12s", rev,
                 n->pending.sha, sha);
    } else if (staged_ok(n, &n->pending, d) &&
               fleet_cache_install(n->o.cache_dir, &n->pending, err, sizeof(err)) == TG_OK) {
        return true;
    } else if (!diag_has_errors(d)) {
        diag_add(d, DIAG_ERROR, NULL, 0, 0, NULL, "revision %" PRId64 ": %s", rev, err);
    }
    char msg[ERROR_TEXT_MAX];
    first_error(d, n->pending.config_path, msg, sizeof(msg));
    set_error(n, rev, msg);
    fleet_rev_free(&n->pending);
    return false;
}

/* The pending revision runs now. */
static void commit(struct fleet_node *n)
{
    char err[256];
    fleet_rev_free(&n->current);
    n->current = n->pending;
    memset(&n->pending, 0, sizeof(n->pending));
    if (n->error_rev != 0 && n->error_rev <= n->current.rev)
        n->error_rev = 0;
    if (fleet_cache_set_applied(n->o.cache_dir, n->current.rev, err, sizeof(err)) != TG_OK)
        log_warn("event=fleet_cache_unwritable error=\"%s\"", err);
}

struct fleet_node *fleet_node_new(const struct fleet_opts *o, struct diag *d)
{
    char err[512];
    struct fleet_node *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->o = *o;
    n->fd = -1;
    snprintf(n->etcd_state, sizeof(n->etcd_state), "up");
    if (fleet_cache_init(o->cache_dir, err, sizeof(err)) != TG_OK) {
        diag_add(d, DIAG_ERROR, NULL, 0, 0, NULL, "fleet cache: %s", err);
        goto fail;
    }
    struct fleet_secret secret;
    bool has_secret = o->secret_file != NULL &&
                      fleet_secret_load(o->secret_file, &secret, err, sizeof(err)) == TG_OK;
    if (o->secret_file != NULL && !has_secret) {
        diag_add(d, DIAG_ERROR, NULL, 0, 0, NULL, "fleet secret: %s", err);
        goto fail;
    }
    struct etcd *e = etcd_new(o->urls, o->n_urls, FLEET_TIMEOUT_MS, &o->tls);
    struct fleet_head head;
    int64_t cached = fleet_cache_applied(o->cache_dir);
    int64_t want = 0;
    char want_sha[65] = "";
    if (e != NULL && fleet_head_read(e, o->prefix, &head, err, sizeof(err)) == TG_OK) {
        struct fleet_rev r;
        if (head.rev == 0) {
            snprintf(err, sizeof(err), "nothing pushed under %s yet", o->prefix);
        } else if (fleet_cache_fetch(o->cache_dir, e, o->prefix, head.rev, head.sha,
                                     has_secret ? &secret : NULL, &r, err, sizeof(err)) == TG_OK) {
            fleet_rev_free(&r);
            want = head.rev;
            memcpy(want_sha, head.sha, sizeof(want_sha));
        }
    } else if (e != NULL) {
        snprintf(n->etcd_error, sizeof(n->etcd_error), "%s", err);
        snprintf(n->etcd_state, sizeof(n->etcd_state), "down");
    }
    etcd_free(e);
    if (has_secret)
        fleet_secret_wipe(&secret);
    if (want != 0) {
        struct diag local;
        diag_init(&local);
        if (prepare(n, want, want_sha, &local)) {
            diag_fini(&local);
            return n;
        }
        log_diag_lines(&local, want);
        if (cached == 0 || cached == want) {
            diag_append_errors(d, &local);
            diag_fini(&local);
            goto fail;
        }
        diag_fini(&local);
        log_warn("event=fleet_start revision=%" PRId64 " result=refused action=use_cached "
                 "cached=%" PRId64,
                 want, cached);
    } else if (cached == 0) {
        diag_add(d, DIAG_ERROR, NULL, 0, 0, NULL,
                 "fleet %s: cannot get a revision from etcd (%s) and no cached revision in %s",
                 o->prefix, err, o->cache_dir);
        goto fail;
    } else {
        log_warn("event=fleet_start source=cache revision=%" PRId64 " reason=\"%s\"", cached, err);
        n->is_from_cache = true;
    }
    if (prepare(n, cached, NULL, d))
        return n;
fail:
    fleet_node_free(n);
    return NULL;
}

enum tg_status fleet_node_load(struct fleet_node *n, struct config **out, struct diag *d)
{
    const struct fleet_rev *r = n->pending.rev != 0 ? &n->pending : &n->current;
    return fleet_cache_load(n->o.cache_dir, r, false, out, d);
}

void fleet_node_loaded(struct fleet_node *n, bool ok)
{
    if (n->pending.rev == 0)
        return;
    if (ok) {
        commit(n);
        log_info("event=fleet_applied node=%s revision=%" PRId64 " sha256=%.12s", n->o.node,
                 n->current.rev, n->current.sha);
    } else {
        fleet_rev_free(&n->pending);
    }
}

int64_t fleet_node_revision(const struct fleet_node *n)
{
    return n->current.rev;
}

static void agent_gone(struct fleet_node *n);

/* The master never waits for its agent: a message that does not fit the
 * socket (the agent stuck for long) ends the connection, and the agent
 * leaves and is started again. */
static bool agent_send(struct fleet_node *n, const json_t *m)
{
    if (n->fd < 0)
        return false;
    if (fleet_msg_send(n->fd, m, 0))
        return true;
    log_warn("event=fleet_agent_unreachable node=%s action=restart_agent", n->o.node);
    agent_gone(n);
    return false;
}

static void send_result(struct fleet_node *n, int64_t rev, const char *sha, bool ok,
                        const char *error)
{
    json_t *m = json_pack("{s:s,s:I,s:s,s:b,s:s}", "t", "result", "rev", (json_int_t)rev, "sha256",
                          sha, "ok", ok, "error", error ? error : "");
    if (m != NULL)
        agent_send(n, m);
    json_decref(m);
}

/* Starts the generation of the pending revision (checked and installed).
 * While old generations drain (max_draining_generations), it waits: the
 * tick tries again once the master can reload, without checking it again. */
static void reload_pending(struct fleet_node *n)
{
    struct diag d;
    diag_init(&d);
    int64_t rev = n->pending.rev;
    char sha[65], *config = strdup(n->pending.config_path); /* pending goes with a failure */
    memcpy(sha, n->pending.sha, sizeof(sha));
    n->is_waiting = false;
    enum admin_reload res = n->ops.reload(n->ops.ctx, &d);
    if (res == ADMIN_RELOAD_OK) {
        send_result(n, rev, sha, true, NULL);
    } else if (res == ADMIN_RELOAD_BUSY) {
        n->is_waiting = true; /* pending kept */
    } else {
        char msg[ERROR_TEXT_MAX];
        first_error(&d, config, msg, sizeof(msg));
        set_error(n, rev, msg);
        send_result(n, rev, sha, false, n->error);
    }
    free(config);
    diag_fini(&d);
}

/* Revision rev is in the cache: apply it as SIGHUP would, or, when only
 * its CRLs and allow files changed, by installing them (the workers'
 * watches take them in, cutting revoked clients). */
static void apply(struct fleet_node *n, int64_t rev, const char *sha)
{
    struct diag d;
    diag_init(&d);
    if (rev == n->current.rev && strcmp(sha, n->current.sha) == 0) {
        send_result(n, rev, sha, true, NULL);
        diag_fini(&d);
        return;
    }
    log_info("event=fleet_apply_start node=%s revision=%" PRId64 " running=%" PRId64, n->o.node,
             rev, n->current.rev);
    if (!prepare(n, rev, sha, &d)) {
        log_diag_lines(&d, rev);
        log_err("event=fleet_apply node=%s revision=%" PRId64 " result=refused errors=%zu "
                "action=keep_serving running=%" PRId64,
                n->o.node, rev, d.n_errors, n->current.rev);
        send_result(n, rev, sha, false, n->error);
        diag_fini(&d);
        return;
    }
    const struct config *cfg = n->ops.current(n->ops.ctx);
    bool watched_only =
        fleet_rev_only_watched_changed(n->o.cache_dir, &n->pending, &n->current, cfg);
    /* The running workers, of every generation, take the new CRLs and
     * allow files in now and cut the clients they refuse. */
    n->ops.trust_changed(n->ops.ctx);
    if (watched_only) {
        commit(n);
        log_info("event=fleet_applied node=%s revision=%" PRId64 " sha256=%.12s reload=no "
                 "detail=\"CRL and allow files only: taken in by the running workers\"",
                 n->o.node, n->current.rev, n->current.sha);
        send_result(n, rev, sha, true, NULL);
        diag_fini(&d);
        return;
    }
    diag_fini(&d);
    reload_pending(n);
}

static void take_keys(struct fleet_node *n, const json_t *m)
{
    const json_t *k = json_object_get(m, "keys");
    json_int_t enc = json_integer_value(json_object_get(m, "enc"));
    uint8_t *raw = NULL;
    size_t len = 0;
    struct ticket_set set;
    memset(&set, 0, sizeof(set));
    if (!json_is_string(k) ||
        !fleet_b64_decode(json_string_value(k), json_string_length(k),
                          TICKET_KEYS_MAX * TICKET_KEY_LEN, &raw, &len) ||
        len == 0 || len % TICKET_KEY_LEN != 0 || enc < 0 || (size_t)enc >= len / TICKET_KEY_LEN) {
        log_err("event=fleet_ticket_keys_refused node=%s reason=malformed", n->o.node);
        free(raw);
        return;
    }
    set.n = len / TICKET_KEY_LEN;
    set.enc = (size_t)enc;
    for (size_t i = 0; i < set.n; i++)
        memcpy(set.v[i].bytes, raw + i * TICKET_KEY_LEN, TICKET_KEY_LEN);
    explicit_bzero(raw, len);
    free(raw);
    n->ops.tickets(n->ops.ctx, &set);
    ticket_set_wipe(&set);
    log_info("event=fleet_ticket_keys node=%s keys=%zu generation=%" JSON_INTEGER_FORMAT, n->o.node,
             (size_t)(len / TICKET_KEY_LEN), json_integer_value(json_object_get(m, "generation")));
}

static void agent_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct fleet_node *n = w->data;
    for (;;) {
        bool closed = false;
        json_t *m = fleet_msg_next(&n->rd, n->fd, &closed);
        if (m == NULL) {
            if (closed)
                agent_gone(n);
            return;
        }
        const char *t = json_string_value(json_object_get(m, "t"));
        json_int_t rev = json_integer_value(json_object_get(m, "rev"));
        if (t == NULL) {
        } else if (strcmp(t, "apply") == 0 && rev > 0 &&
                   fleet_is_hex64(json_string_value(json_object_get(m, "sha256")))) {
            apply(n, rev, json_string_value(json_object_get(m, "sha256")));
        } else if (strcmp(t, "fetch_failed") == 0 && rev > 0) {
            set_error(n, rev, json_string_value(json_object_get(m, "error")) ?: "unreadable");
        } else if (strcmp(t, "tickets") == 0) {
            take_keys(n, m);
        } else if (strcmp(t, "view") == 0) {
            json_t *v = json_object_get(m, "view");
            if (json_is_object(v)) {
                json_decref(n->view);
                n->view = json_incref(v);
            }
            const char *s = json_string_value(json_object_get(m, "etcd"));
            const char *e = json_string_value(json_object_get(m, "error"));
            bool up = s != NULL && strcmp(s, "up") == 0;
            snprintf(n->etcd_state, sizeof(n->etcd_state), "%s", up ? "up" : "down");
            if (up && json_is_object(v))
                n->is_from_cache = false; /* etcd answers: what runs is what it says */
            n->is_name_taken = json_is_true(json_object_get(m, "name_taken"));
            snprintf(n->etcd_error, sizeof(n->etcd_error), "%s", e ? e : "");
        }
        json_decref(m);
    }
}

/* The node's entry: what it runs and what it sees. */
static json_t *node_state(struct fleet_node *n)
{
    json_t *st = n->ops.status(n->ops.ctx);
    json_t *ls = json_array(), *ts = json_array(), *cs = json_array();
    const json_t *x;
    size_t i;
    json_array_foreach(json_object_get(st, "listeners"), i, x) json_array_append_new(
        ls, json_pack("{s:O?,s:O?,s:O?,s:O?}", "name", json_object_get(x, "name"), "address",
                      json_object_get(x, "address"), "protocol", json_object_get(x, "protocol"),
                      "tls_mode", json_object_get(x, "tls_mode")));
    json_array_foreach(json_object_get(st, "target_groups"), i, x)
    {
        const json_t *t;
        size_t k;
        json_array_foreach(json_object_get(x, "targets"), k, t) json_array_append_new(
            ts, json_pack("{s:O?,s:O?,s:O?}", "group", json_object_get(x, "name"), "address",
                          json_object_get(t, "address"), "state", json_object_get(t, "health")));
    }
    json_array_foreach(json_object_get(st, "certificates"), i,
                       x) if (json_is_string(json_object_get(x, "role")) &&
                              strcmp(json_string_value(json_object_get(x, "role")), "leaf") == 0)
        json_array_append_new(cs, json_pack("{s:O?,s:O?,s:O?}", "name", json_object_get(x, "name"),
                                            "not_after", json_object_get(x, "not_after"),
                                            "days_left", json_object_get(x, "days_left")));
    json_decref(st);
    json_t *err = json_null();
    if (n->error_rev != 0)
        err = json_pack("{s:I,s:s,s:I}", "rev", (json_int_t)n->error_rev, "message", n->error, "at",
                        (json_int_t)n->error_at);
    char host[256] = "", instance[4400];
    gethostname(host, sizeof(host) - 1);
    snprintf(instance, sizeof(instance), "%s:%s", host, n->o.cache_dir);
    return json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:o,s:o,s:o,s:o}", "node", n->o.node, "host",
                     host, "instance", instance, "pid", (json_int_t)getpid(), "rev",
                     (json_int_t)n->current.rev, "sha256", n->current.sha, "source",
                     n->is_from_cache ? "cache" : "etcd", "error", err, "listeners", ls, "targets",
                     ts, "certificates", cs);
}

static void spawn_agent(struct fleet_node *n);

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct fleet_node *n = t->data;
    if (n->fd < 0 && n->agent == 0 && ev_now(n->loop) >= n->spawn_after)
        spawn_agent(n);
    if (n->is_waiting && n->pending.rev != 0 && !n->ops.is_busy(n->ops.ctx))
        reload_pending(n);
    if (n->fd < 0)
        return;
    json_t *s = node_state(n);
    if (s == NULL)
        return;
    if (n->last_state == NULL || !json_equal(s, n->last_state)) {
        const struct config *cfg = n->ops.current(n->ops.ctx);
        json_t *m = json_pack("{s:s,s:O,s:I}", "t", "state", "state", s, "rotation_ms",
                              (json_int_t)(cfg ? cfg->ticket_key_rotation_ms : 0));
        if (m != NULL && agent_send(n, m)) {
            json_decref(n->last_state);
            n->last_state = json_incref(s);
        }
        json_decref(m);
    }
    json_decref(s);
}

static void child_cb(struct ev_loop *loop, ev_child *c, int revents)
{
    (void)loop;
    (void)revents;
    struct fleet_node *n = c->data;
    if (c->rpid != n->agent)
        return;
    log_err("event=fleet_agent_died node=%s pid=%d status=%d action=restart", n->o.node,
            (int)c->rpid, c->rstatus);
    ev_child_stop(n->loop, &n->child);
    n->agent = 0;
    /* One that dies young is not started again at once, every second. */
    if (ev_now(n->loop) - n->agent_started < AGENT_RESPAWN * 10)
        n->spawn_after = ev_now(n->loop) + AGENT_RESPAWN * 10;
    agent_gone(n);
}

/* Ends the connection to the agent (which then leaves, if alive). */
static void agent_gone(struct fleet_node *n)
{
    if (n->fd >= 0) {
        ev_io_stop(n->loop, &n->io);
        close(n->fd);
        n->fd = -1;
        fleet_msg_reader_fini(&n->rd);
    }
    json_decref(n->last_state);
    n->last_state = NULL;
}

/* In the child: tollgate fleet-agent with the node's options. */
static void exec_agent(const struct fleet_node *n)
{
    char urls[4096] = "", ttl[16], rev[32];
    size_t off = 0;
    for (size_t i = 0; i < n->o.n_urls && off < sizeof(urls); i++)
        off += (size_t)snprintf(urls + off, sizeof(urls) - off, "%s%s", i ? "," : "", n->o.urls[i]);
    snprintf(ttl, sizeof(ttl), "%u", n->o.lease_ttl);
    snprintf(rev, sizeof(rev), "%" PRId64, n->current.rev);
    /* Options without a value are left out. */
    const char *opt[][2] = {
        {"--fleet", urls},
        {"--prefix", n->o.prefix},
        {"--node", n->o.node},
        {"--cache-dir", n->o.cache_dir},
        {"--lease-ttl", ttl},
        {"--running", rev},
        {"--running-sha", n->current.sha},
        {"--secret-file", n->o.secret_file},
        {"--etcd-ca", n->o.tls.ca_file},
        {"--etcd-cert", n->o.tls.cert_file},
        {"--etcd-key", n->o.tls.key_file},
    };
    const char *argv[2 + 2 * TG_ARRAY_LEN(opt) + 1] = {"tollgate", "fleet-agent"};
    size_t k = 2;
    for (size_t i = 0; i < TG_ARRAY_LEN(opt); i++)
        if (opt[i][1] != NULL) {
            argv[k++] = opt[i][0];
            argv[k++] = opt[i][1];
        }
    argv[k] = NULL;
    execv("/proc/self/exe", (char *const *)argv);
    log_err("event=fleet_agent_unavailable error=\"cannot run /proc/self/exe: %s\"",
            strerror(errno));
}

static void spawn_agent(struct fleet_node *n)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        log_err("event=fleet_agent_unavailable error=\"%s\"", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        log_err("event=fleet_agent_unavailable error=\"%s\"", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return;
    }
    if (pid == 0) {
        /* A fresh image: nothing of the master's, neither its sockets nor
         * its keys in memory; only the socket pair, as descriptor 3. It
         * leaves when the master does (end of file on the socket),
         * revoking its lease on the way out: the signals a service manager
         * sends to the whole group are ignored. */
        static const int ignored[] = {SIGHUP, SIGPIPE, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2};
        for (size_t i = 0; i < TG_ARRAY_LEN(ignored); i++)
            signal(ignored[i], SIG_IGN);
        if (dup2(sv[1], FLEET_AGENT_FD) < 0)
            _exit(1);
        closefrom(FLEET_AGENT_FD + 1);
        exec_agent(n);
        _exit(1);
    }
    close(sv[1]);
    n->fd = sv[0];
    int buf = 4 << 20; /* room for a burst of state while the agent waits on etcd */
    (void)setsockopt(n->fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    n->agent = pid;
    n->agent_started = ev_now(n->loop);
    fcntl(n->fd, F_SETFL, fcntl(n->fd, F_GETFL) | O_NONBLOCK);
    ev_io_init(&n->io, agent_io_cb, n->fd, EV_READ);
    n->io.data = n;
    ev_io_start(n->loop, &n->io);
    ev_child_init(&n->child, child_cb, pid, 0);
    n->child.data = n;
    ev_child_start(n->loop, &n->child);
}

void fleet_node_retry(struct fleet_node *n)
{
    if (n == NULL || n->fd < 0)
        return;
    json_t *m = json_pack("{s:s}", "t", "retry");
    if (m != NULL)
        agent_send(n, m);
    json_decref(m);
}

void fleet_node_start(struct fleet_node *n, struct ev_loop *loop, const struct fleet_node_ops *ops)
{
    n->loop = loop;
    n->ops = *ops;
    ev_timer_init(&n->tick, tick_cb, 0., STATE_EVERY);
    n->tick.data = n;
    ev_timer_start(loop, &n->tick);
}

void fleet_node_forget(struct fleet_node *n)
{
    if (n == NULL)
        return;
    if (n->loop != NULL) {
        ev_timer_stop(n->loop, &n->tick);
        if (n->fd >= 0)
            ev_io_stop(n->loop, &n->io);
        if (n->agent != 0)
            ev_child_stop(n->loop, &n->child);
    }
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
}

json_t *fleet_node_status_json(const struct fleet_node *n)
{
    json_t *err = json_null();
    if (n->error_rev != 0)
        err = json_pack("{s:I,s:s,s:I}", "rev", (json_int_t)n->error_rev, "message", n->error, "at",
                        (json_int_t)n->error_at);
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:o,s:s,s:s,s:b,s:O?}", "node", n->o.node, "prefix",
                     n->o.prefix, "rev", (json_int_t)n->current.rev, "sha256", n->current.sha,
                     "source", n->is_from_cache ? "cache" : "etcd", "error", err, "etcd",
                     n->etcd_state, "etcd_error", n->etcd_error, "name_taken", n->is_name_taken,
                     "view", n->view);
}

void fleet_node_free(struct fleet_node *n)
{
    if (n == NULL)
        return;
    fleet_node_forget(n);
    /* The agent sees the socket close and leaves, revoking its lease;
     * bounded by one request to etcd and a margin. */
    for (int i = 0; n->agent > 0 && i < 50; i++) {
        if (waitpid(n->agent, NULL, WNOHANG) == n->agent)
            n->agent = 0;
        else
            usleep(100 * 1000);
    }
    if (n->agent > 0) {
        kill(n->agent, SIGKILL);
        (void)waitpid(n->agent, NULL, 0);
    }
    fleet_rev_free(&n->current);
    fleet_rev_free(&n->pending);
    fleet_msg_reader_fini(&n->rd);
    json_decref(n->view);
    json_decref(n->last_state);
    free(n);
}
