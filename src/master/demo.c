#include "master/master.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/suggest.h"
#include "pki/pki.h"

/* The embedded default: every listener kind in both TLS modes, served by
 * builtin:echo so that nothing else has to run. */
static const char demo_config[] =
    "# tollgate demo configuration, written by `tollgate demo`.\n"
    "workers: 1\n"
    "log: { level: info, access: stdout }\n"
    "certificates:\n"
    "  site:     { cert: pki/server-ecdsa.crt, key: pki/server-ecdsa.key }\n"
    "  site-rsa: { cert: pki/server-rsa.crt,   key: pki/server-rsa.key }\n"
    "client_cas:\n"
    "  demo: { ca: pki/ca-bundle.crt, crl: pki/clients.crl }\n"
    "target_groups:\n"
    "  echo:\n"
    "    targets: [ { address: \"builtin:echo\" } ]\n"
    "listeners:\n"
    "  - name: https-one-way\n"
    "    protocol: https\n"
    "    listen: 127.0.0.1:8443\n"
    "    tls: { mode: one-way, certificates: [site, site-rsa] }\n"
    "    rules:\n"
    "      - { path: /ping, respond: { status: 200, body: \"pong\\n\" } }\n"
    "    default_target_group: echo\n"
    "  - name: https-mutual\n"
    "    protocol: https\n"
    "    listen: 127.0.0.1:8444\n"
    "    tls: { mode: mutual, certificates: [site, site-rsa], client_ca: demo }\n"
    "    default_target_group: echo\n"
    "  - name: tcp-mutual\n"
    "    protocol: tcp_ssl\n"
    "    listen: 127.0.0.1:9443\n"
    "    tls: { mode: mutual, certificates: [site, site-rsa], client_ca: demo }\n"
    "    target_group: echo\n";

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "tollgate demo: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fputs(text, f);
    if (fclose(f) != 0) {
        fprintf(stderr, "tollgate demo: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void print_howto(const char *dir)
{
    printf("\ntollgate demo is starting with %s/tollgate.yaml\n\n"
           "https, one-way TLS, on 127.0.0.1:8443 (answers JSON describing your request):\n"
           "    curl --cacert %s/pki/ca-bundle.crt https://localhost:8443/hello\n"
           "    curl --cacert %s/pki/ca-bundle.crt https://localhost:8443/ping\n\n"
           "https, mutual TLS, on 127.0.0.1:8444:\n"
           "  with the client certificate (accepted; see the X-Client-* headers):\n"
           "    curl --cacert %s/pki/ca-bundle.crt --cert %s/pki/alice.crt --key "
           "%s/pki/alice.key \\\n"
           "      https://localhost:8444/hello\n"
           "  the same from alice.p12 (its password, random for each PKI, is in "
           "p12-password.txt):\n"
           "    curl --cacert %s/pki/ca-bundle.crt --cert-type P12 \\\n"
           "      --cert \"%s/pki/alice.p12:$(cat %s/pki/p12-password.txt)\" "
           "https://localhost:8444/hello\n"
           "  without a certificate (refused during the handshake, reason=no_client_cert):\n"
           "    curl --cacert %s/pki/ca-bundle.crt https://localhost:8444/hello\n\n"
           "tcp_ssl, mutual TLS, on 127.0.0.1:9443 (echoes what you send):\n"
           "  with the client certificate (accepted, prints hello):\n"
           "    (echo hello; sleep 1) | openssl s_client -quiet -no_ign_eof -connect "
           "127.0.0.1:9443 \\\n"
           "      -CAfile %s/pki/ca-bundle.crt -cert %s/pki/alice.crt -key %s/pki/alice.key\n"
           "  without it (refused, reason=no_client_cert in the log):\n"
           "    (echo hello; sleep 1) | openssl s_client -quiet -no_ign_eof -connect "
           "127.0.0.1:9443 \\\n"
           "      -CAfile %s/pki/ca-bundle.crt\n"
           "  with the revoked certificate (refused, reason=cert_revoked):\n"
           "    (echo hello; sleep 1) | openssl s_client -quiet -no_ign_eof -connect "
           "127.0.0.1:9443 \\\n"
           "      -CAfile %s/pki/ca-bundle.crt -cert %s/pki/revoked.crt -key "
           "%s/pki/revoked.key\n\n"
           "Check the config: tollgate check -c %s/tollgate.yaml\n"
           "Stop with Ctrl-C.\n\n",
           dir, dir, dir, dir, dir, dir, dir, dir, dir, dir, dir, dir, dir, dir, dir, dir, dir,
           dir);
    fflush(stdout);
}

static void usage(FILE *out)
{
    fputs("usage: tollgate demo [--dir DIR]\n"
          "  Writes a development PKI and a config into DIR (default ./tollgate-demo),\n"
          "  prints the commands to try, and runs tollgate in the foreground with three\n"
          "  listeners on 127.0.0.1 served by the built-in echo backend: https one-way\n"
          "  (8443), https mutual TLS (8444) and tcp_ssl mutual TLS (9443). Ctrl-C stops\n"
          "  it.\n"
          "\n"
          "options:\n"
          "  --dir DIR   where to write pki/ and tollgate.yaml (created if missing;\n"
          "              files replaced)\n"
          "  -h, --help  this help\n"
          "\n"
          "examples:\n"
          "  tollgate demo\n"
          "  tollgate demo --dir /tmp/tg-demo\n"
          "\n"
          "exit codes: 0 after a clean stop, 1 when it cannot start, 2 usage error.\n",
          out);
}

int master_cmd_demo(int argc, char **argv)
{
    static const char *const opts[] = {"--dir", "--help"};
    const char *dir = "tollgate-demo";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--dir") == 0) {
            fprintf(stderr, "tollgate demo: --dir needs a directory\n");
            return 2;
        } else {
            return suggest_usage_error(stderr, "demo", argv[i], opts, TG_ARRAY_LEN(opts));
        }
    }
    char pki_dir[4096], cfg_path[4096], err[512];
    snprintf(pki_dir, sizeof(pki_dir), "%s/pki", dir);
    snprintf(cfg_path, sizeof(cfg_path), "%s/tollgate.yaml", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "tollgate demo: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    static const char *const clients[] = {"alice"};
    struct pki_init_opts o = {
        .dir = pki_dir, .key = PKI_KEY_ECDSA, .clients = clients, .n_clients = 1};
    if (pki_init(&o, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tollgate demo: %s\n", err);
        return 1;
    }
    if (write_file(cfg_path, demo_config) != 0)
        return 1;
    print_howto(dir);
    return master_run_config(cfg_path);
}
