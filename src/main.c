/* tollgate: one binary for the daemon and its tooling. Exit codes: 0 success
 * (and help), 1 the config, certificate or handshake checked is bad, 2 usage
 * error. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/opensslv.h>

#include "admin/admin.h"
#include "config/config.h"
#include "core/diag.h"
#include "core/suggest.h"
#include "fleet/agent.h"
#include "fleet/fleet.h"
#include "fleet/rev.h"
#include "master/master.h"
#include "pki/pki.h"

static const char *const commands[] = {"run",   "check", "demo",  "pki",     "cert",
                                       "probe", "trust", "fleet", "version", "help"};

static void usage(FILE *out)
{
    fputs("usage: tollgate COMMAND [OPTIONS]\n"
          "  A TLS-terminating load balancer: tcp_ssl and https listeners, one-way or\n"
          "  mutual TLS, target groups with health checks, and certificate tooling.\n"
          "\n"
          "commands:\n"
          "  run         run the master and its workers in the foreground\n"
          "  check       validate a config: every error as file:line:col, then warnings\n"
          "  demo        write a dev PKI and a config with built-in backends, and run it\n"
          "  pki init    write a development PKI: CAs, server and client certificates\n"
          "  pki revoke  add a certificate of that PKI to its CA's CRL (clients.crl)\n"
          "  cert        inspect, verify, match and convert certificates and keys\n"
          "  probe       connect as a TLS client and say why a handshake is refused\n"
          "  trust diff  replay the client certificates accepted lately against a\n"
          "              proposed CA bundle, CRL or allow file: who would be refused\n"
          "  fleet       push a config to a fleet of nodes through etcd, list and roll\n"
          "              back its revisions, and show every node's state\n"
          "  version     print the version of tollgate and of its OpenSSL\n"
          "\"tollgate COMMAND --help\" (or \"tollgate help COMMAND\") describes one.\n"
          "\n"
          "examples:\n"
          "  tollgate pki init pki\n"
          "  tollgate check -c /etc/tollgate/tollgate.yaml\n"
          "  tollgate run -c /etc/tollgate/tollgate.yaml\n"
          "  tollgate probe localhost:8443 --ca pki/ca-bundle.crt\n"
          "\n"
          "exit codes: 0 success (also for --help), 1 the config, certificate or\n"
          "handshake checked is bad, or run could not start; 2 usage error.\n",
          out);
}

static void run_usage(FILE *out)
{
    fputs("usage: tollgate run -c FILE\n"
          "       tollgate run --fleet URLS --prefix P [--node NAME] [--secret-file FILE]\n"
          "                    [--cache-dir DIR] [--lease-ttl SECONDS] [--etcd-ca FILE]\n"
          "                    [--etcd-cert FILE --etcd-key FILE]\n"
          "  Runs the master and its workers in the foreground, logging to stderr, until\n"
          "  SIGTERM or SIGQUIT (drain, then exit 0). The config is checked first, as by\n"
          "  \"tollgate check\"; with an error nothing starts. SIGHUP reloads the config\n"
          "  without dropping a connection; SIGUSR1 reopens the access log file.\n"
          "\n"
          "options:\n"
          "  -c, --config FILE  the config (YAML; docs/CONFIG.md has every key)\n"
          "  --fleet URLS       join a fleet: the config comes from etcd (comma-separated\n"
          "                     client URLs), pushed with \"tollgate fleet push\"\n"
          "  --prefix P         the fleet's key prefix in etcd (/tollgate/prod)\n"
          "  --node NAME        this node's name in the fleet (default: the host name)\n"
          "  --secret-file FILE the fleet secret (32 bytes or more, mode 0600): shares\n"
          "                     session-ticket keys with the other nodes; without it\n"
          "                     each node keeps its own\n"
          "  --cache-dir DIR    where the node keeps the revisions it applied, to start\n"
          "                     without etcd (default /var/lib/tollgate/fleet)\n"
          "  --lease-ttl SECS   how long the node's entry outlives it (default 10)\n"
          "  --etcd-ca FILE     the CA bundle that verifies https:// etcd endpoints\n"
          "  --etcd-cert FILE   a client certificate for etcd's --client-cert-auth,\n"
          "  --etcd-key FILE    and its key\n"
          "  -h, --help         this help\n"
          "\n"
          "examples:\n"
          "  tollgate run -c /etc/tollgate/tollgate.yaml\n"
          "  systemctl reload tollgate        # under systemd: SIGHUP to the master\n"
          "\n"
          "exit codes: 0 after a clean stop, 1 when it cannot start, 2 usage error.\n",
          out);
}

static void check_usage(FILE *out)
{
    fputs("usage: tollgate check -c FILE [--format text|json] [-T]\n"
          "  Loads the config and everything it names (certificates, keys, CAs, CRLs)\n"
          "  and reports every error at once as FILE:LINE:COL: KEY: MESSAGE, then the\n"
          "  warnings (certificates about to expire, stale CRLs, ...). Nothing starts.\n"
          "\n"
          "options:\n"
          "  -c, --config FILE   the config to check\n"
          "  --format text|json  text (default): findings on stderr, a summary line;\n"
          "                      json: one object on stdout for CI pipelines:\n"
          "                      {\"ok\": BOOL, \"errors\": [{\"file\", \"line\", \"column\",\n"
          "                      \"key\", \"message\"}], \"warnings\": [...]}\n"
          "  -T, --dump          print the config with every default filled in\n"
          "                      (text only)\n"
          "  -h, --help          this help\n"
          "\n"
          "examples:\n"
          "  tollgate check -c /etc/tollgate/tollgate.yaml\n"
          "  tollgate check -c tollgate.yaml --format json | jq '.errors[].message'\n"
          "  tollgate check -c tollgate.yaml -T\n"
          "\n"
          "exit codes: 0 valid (warnings allowed), 1 at least one error, 2 usage error.\n",
          out);
}

static void version_usage(FILE *out)
{
    fputs("usage: tollgate version\n"
          "  Prints the version of tollgate and of the OpenSSL it was built with.\n"
          "\n"
          "options:\n"
          "  -h, --help  this help\n"
          "\n"
          "examples:\n"
          "  tollgate version\n"
          "  tollgate --version\n",
          out);
}

static bool is_help(const char *a)
{
    return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

/*
 * Matches "NAME VALUE" and "NAME=VALUE" at argv[*i] for either spelling.
 * Returns 0 when argv[*i] is another argument, 1 with *value set (and *i
 * advanced past a separate value), -1 when the value is missing.
 */
static int opt_value(int argc, char **argv, int *i, const char *short_name, const char *long_name,
                     const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(long_name);
    if (strncmp(a, long_name, n) == 0 && a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (strcmp(a, long_name) != 0 && (short_name == NULL || strcmp(a, short_name) != 0))
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

/* The host name up to its first dot. */
static const char *default_node(char *host, size_t len)
{
    if (gethostname(host, len - 1) != 0)
        host[0] = '\0';
    host[len - 1] = '\0';
    char *dot = strchr(host, '.');
    if (dot != NULL)
        *dot = '\0';
    return host;
}

/* tollgate run --fleet URLS --prefix P [--node NAME] [--secret-file F]
 * [--cache-dir D] [--lease-ttl SECONDS] */
static int run_fleet(char *urls, const char *prefix, const char *node, const char *secret,
                     const char *cache, const char *ttl, const struct etcd_tls *tls)
{
    static struct fleet_opts o;
    o.tls = *tls;
    static char host[FLEET_NODE_MAX + 1];
    char err[256];
    if (!fleet_parse_urls(urls, &o, err, sizeof(err))) {
        fprintf(stderr, "tollgate run: --fleet: %s\n", err);
        return 2;
    }
    if (prefix == NULL) {
        fprintf(stderr, "tollgate run: --fleet needs --prefix P (the fleet's keys in etcd)\n");
        return 2;
    }
    snprintf(o.prefix, sizeof(o.prefix), "%s", prefix);
    if (strlen(prefix) >= sizeof(o.prefix) || !fleet_prefix_ok(o.prefix, err, sizeof(err))) {
        fprintf(stderr, "tollgate run: --prefix %s: %s\n", prefix, err);
        return 2;
    }
    if (node == NULL)
        node = default_node(host, sizeof(host));
    if (!fleet_node_name_ok(node)) {
        fprintf(stderr, "tollgate run: --node \"%s\": 1 to %d of A-Z a-z 0-9 . _ -\n", node,
                FLEET_NODE_MAX);
        return 2;
    }
    o.node = node;
    o.secret_file = secret;
    o.cache_dir = cache != NULL ? cache : "/var/lib/tollgate/fleet";
    o.lease_ttl = FLEET_LEASE_TTL;
    if (ttl != NULL) {
        char *end;
        long v = strtol(ttl, &end, 10);
        if (end == ttl || *end != '\0' || v < 2 || v > 300) {
            fprintf(stderr, "tollgate run: --lease-ttl %s: 2 to 300 seconds\n", ttl);
            return 2;
        }
        o.lease_ttl = (unsigned)v;
    }
    return master_run_fleet(&o);
}

/* -c FILE: a config, or a node file (fleet: only) that joins a fleet. */
static int run_file(const char *path)
{
    struct diag d;
    struct config *cfg = NULL;
    diag_init(&d);
    bool is_node = config_load(path, &cfg, &d) == TG_OK && cfg->fleet != NULL;
    diag_fini(&d);
    if (!is_node) {
        config_free(cfg);
        return master_run_config(path); /* reports what is wrong, if anything */
    }
    /* The node file's strings live as long as the node runs. */
    const struct cfg_fleet *f = cfg->fleet;
    static struct fleet_opts o;
    static char host[FLEET_NODE_MAX + 1];
    for (size_t i = 0; i < f->n_etcd; i++)
        o.urls[o.n_urls++] = f->etcd[i];
    snprintf(o.prefix, sizeof(o.prefix), "%s", f->prefix);
    o.node = f->node != NULL ? f->node : default_node(host, sizeof(host));
    o.secret_file = f->secret_file;
    o.cache_dir = f->cache_dir != NULL ? f->cache_dir : "/var/lib/tollgate/fleet";
    o.lease_ttl = f->lease_ttl;
    o.tls = (struct etcd_tls){f->etcd_ca, f->etcd_cert, f->etcd_key};
    int rc = 1;
    if (fleet_node_name_ok(o.node))
        rc = master_run_fleet(&o);
    else
        fprintf(stderr,
                "tollgate run: %s: fleet.node is not given and the host name \"%s\" is "
                "not a node name: set fleet.node\n",
                path, o.node);
    config_free(cfg);
    return rc;
}

static int cmd_run(int argc, char **argv)
{
    static const char *const opts[] = {"-c",        "--config",      "--fleet",     "--prefix",
                                       "--node",    "--secret-file", "--cache-dir", "--lease-ttl",
                                       "--etcd-ca", "--etcd-cert",   "--etcd-key",  "--help"};
    const char *path = NULL, *urls = NULL, *prefix = NULL, *node = NULL, *secret = NULL,
               *cache = NULL, *ttl = NULL;
    struct etcd_tls tls = {NULL, NULL, NULL};
    struct {
        const char *name;
        const char **dst;
    } const fleet_opts[] = {{"--fleet", &urls},
                            {"--prefix", &prefix},
                            {"--node", &node},
                            {"--secret-file", &secret},
                            {"--cache-dir", &cache},
                            {"--lease-ttl", &ttl},
                            {"--etcd-ca", &tls.ca_file},
                            {"--etcd-cert", &tls.cert_file},
                            {"--etcd-key", &tls.key_file}};
    for (int i = 1; i < argc; i++) {
        int m = opt_value(argc, argv, &i, "-c", "--config", &path);
        for (size_t k = 0; m == 0 && k < TG_ARRAY_LEN(fleet_opts); k++)
            m = opt_value(argc, argv, &i, NULL, fleet_opts[k].name, fleet_opts[k].dst);
        if (m > 0)
            continue;
        if (m < 0) {
            fprintf(stderr, "tollgate run: %s needs a value\n", argv[i]);
            return 2;
        }
        if (is_help(argv[i])) {
            run_usage(stdout);
            return 0;
        }
        return suggest_usage_error(stderr, "run", argv[i], opts, TG_ARRAY_LEN(opts));
    }
    if (path != NULL && urls != NULL) {
        fprintf(stderr, "tollgate run: -c or --fleet, not both: a fleet node's config comes "
                        "from the fleet\n");
        return 2;
    }
    if (urls != NULL) {
        char buf[4096];
        snprintf(buf, sizeof(buf), "%s", urls);
        return run_fleet(buf, prefix, node, secret, cache, ttl, &tls);
    }
    if (prefix != NULL || node != NULL || secret != NULL || cache != NULL || ttl != NULL ||
        tls.ca_file != NULL || tls.cert_file != NULL || tls.key_file != NULL) {
        fprintf(stderr, "tollgate run: --prefix, --node, --secret-file, --cache-dir and "
                        "--lease-ttl go with --fleet\n");
        return 2;
    }
    if (path == NULL) {
        fprintf(stderr, "tollgate run: which config? give -c FILE (or --fleet URLS)\n");
        run_usage(stderr);
        return 2;
    }
    return run_file(path);
}

static int cmd_check(int argc, char **argv)
{
    static const char *const opts[] = {"-c", "--config", "--format", "-T", "--dump", "--help"};
    static const char *const formats[] = {"text", "json"};
    const char *path = NULL;
    const char *format = "text";
    bool is_dump = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int m = opt_value(argc, argv, &i, "-c", "--config", &path);
        if (m == 0)
            m = opt_value(argc, argv, &i, NULL, "--format", &format);
        if (m > 0)
            continue;
        if (m < 0) {
            fprintf(stderr, "tollgate check: %s needs a value\n", a);
            return 2;
        }
        if (is_help(a)) {
            check_usage(stdout);
            return 0;
        }
        if (strcmp(a, "-T") == 0 || strcmp(a, "--dump") == 0) {
            is_dump = true;
            continue;
        }
        return suggest_usage_error(stderr, "check", a, opts, TG_ARRAY_LEN(opts));
    }
    if (strcmp(format, "text") != 0 && strcmp(format, "json") != 0) {
        suggest_print_unknown(stderr, "tollgate check", "format", format, formats,
                              TG_ARRAY_LEN(formats));
        fprintf(stderr, "--format takes text or json; see \"tollgate check --help\"\n");
        return 2;
    }
    bool is_json = strcmp(format, "json") == 0;
    if (path == NULL) {
        fprintf(stderr, "tollgate check: which config? give -c FILE\n");
        check_usage(stderr);
        return 2;
    }
    if (is_dump && is_json) {
        fprintf(stderr, "tollgate check: -T prints YAML; it does not combine with --format json\n");
        return 2;
    }
    if (is_dump)
        return admin_cmd_check_dump(path);
    return master_cmd_check(path, is_json);
}

static int cmd_version(int argc, char **argv)
{
    static const char *const opts[] = {"--help"};
    if (argc > 1 && is_help(argv[1])) {
        version_usage(stdout);
        return 0;
    }
    if (argc > 1)
        return suggest_usage_error(stderr, "version", argv[1], opts, TG_ARRAY_LEN(opts));
    printf("tollgate %s (OpenSSL %s)\n", TG_VERSION, OPENSSL_VERSION_STR);
    return 0;
}

static void pki_usage(FILE *out)
{
    fputs("usage: tollgate pki SUBCOMMAND [OPTIONS]\n"
          "  A development PKI written with OpenSSL's API, for demos, tests and first\n"
          "  experiments. Not for production: the CA keys sit next to everything else.\n"
          "\n"
          "subcommands:\n"
          "  init DIR [--key ecdsa|rsa] [--hosts h1,h2] [--clients alice,bob]\n"
          "      root and intermediate CAs, server and client certificates, a CRL\n"
          "  revoke DIR NAME|CERTFILE [--reason REASON] [--crl-days N]\n"
          "      add a certificate to its CA's CRL in DIR/clients.crl\n"
          "\"tollgate pki SUBCOMMAND --help\" says more.\n"
          "\n"
          "examples:\n"
          "  tollgate pki init pki --clients alice,bob\n"
          "  tollgate pki revoke pki alice\n"
          "\n"
          "exit codes: 0 done, 1 refused or failed, 2 usage error.\n",
          out);
}

/* tollgate pki init|revoke ... */
static int cmd_pki(int argc, char **argv)
{
    static const char *const subs[] = {"init", "revoke", "--help"};
    if (argc < 2) {
        pki_usage(stderr);
        return 2;
    }
    if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        pki_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "init") == 0)
        return pki_cmd_init(argc - 1, argv + 1);
    if (strcmp(argv[1], "revoke") == 0)
        return pki_cmd_revoke(argc - 1, argv + 1);
    if (argv[1][0] == '-')
        return suggest_usage_error(stderr, "pki", argv[1], subs, TG_ARRAY_LEN(subs));
    suggest_print_unknown(stderr, "tollgate pki", "subcommand", argv[1], subs,
                          TG_ARRAY_LEN(subs) - 1);
    fprintf(stderr, "see \"tollgate pki --help\"\n");
    return 2;
}

static int dispatch(int argc, char **argv)
{
    const char *cmd = argv[0];
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc, argv);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(argc, argv);
    if (strcmp(cmd, "demo") == 0)
        return master_cmd_demo(argc, argv);
    if (strcmp(cmd, "pki") == 0)
        return cmd_pki(argc, argv);
    if (strcmp(cmd, "cert") == 0)
        return pki_cmd_cert(argc, argv);
    if (strcmp(cmd, "probe") == 0)
        return pki_cmd_probe(argc, argv);
    if (strcmp(cmd, "trust") == 0)
        return pki_cmd_trust(argc, argv);
    if (strcmp(cmd, "fleet") == 0)
        return fleet_cmd(argc, argv);
    if (strcmp(cmd, "fleet-agent") == 0)
        return fleet_agent_cmd(argc, argv);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
        return cmd_version(argc, argv);
    static const char *const opts[] = {"--help", "--version"};
    if (cmd[0] == '-')
        suggest_print_unknown(stderr, "tollgate", "option", cmd, opts, TG_ARRAY_LEN(opts));
    else
        suggest_print_unknown(stderr, "tollgate", "command", cmd, commands, TG_ARRAY_LEN(commands));
    fprintf(stderr, "see \"tollgate --help\" for the commands\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (is_help(cmd) || strcmp(cmd, "help") == 0) {
        if (argc < 3 || strcmp(cmd, "help") != 0) {
            usage(stdout);
            return 0;
        }
        /* tollgate help COMMAND [SUB]: the same as tollgate COMMAND [SUB] --help */
        char *help_argv[4] = {argv[2], NULL, NULL, NULL};
        int n = 1;
        if (argc > 3 && argv[3][0] != '-')
            help_argv[n++] = argv[3];
        help_argv[n++] = "--help";
        return dispatch(n, help_argv);
    }
    return dispatch(argc - 1, argv + 1);
}
