/* tollgate probe HOST:PORT ...: options and the report for a person. */
#include "pki/internal.h"
#include "pki/pki.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "core/suggest.h"

#define PROBE_MAX_CRLS 16

static const char *const probe_opts[] = {
    "--sni",    "--ca",      "--cert",          "--key",  "--crl",  "--tls1.2",
    "--tls1.3", "--timeout", "--password-file", "--json", "--help",
};

static void usage(FILE *out)
{
    fputs("usage: tollgate probe HOST:PORT [--sni NAME] [--ca CA] [--cert C --key K]\n"
          "                      [--crl CRL] [--tls1.2|--tls1.3] [--password-file F]\n"
          "                      [--timeout SECONDS] [--json]\n"
          "  Connects as a TLS client and shows each step: what we offer, what the\n"
          "  server answers, its chain, the checks a client makes on it, whether it asks\n"
          "  for a client certificate (and from which CAs), why it refuses, if it\n"
          "  does, and the OCSP response it staples, checked.\n"
          "\n"
          "options:\n"
          "  --sni            name to send and to check the certificate against\n"
          "                   (default: HOST)\n"
          "  --ca             CA certificates to trust (default: the system trust store)\n"
          "  --cert           client certificate to present (any format)\n"
          "  --key            its private key, when not in the --cert file\n"
          "  --crl            CRL file(s) to check the server's chain against (up to 16)\n"
          "  --tls1.2, --tls1.3  offer only that version\n"
          "  --password-file  file whose first line is the password of --cert or --key\n"
          "  --timeout        handshake timeout in seconds, 1 to 300 (default 5;\n"
          "                   connect: 3)\n"
          "  --json           the report as JSON\n"
          "  -h, --help       this help\n"
          "\n"
          "examples:\n"
          "  tollgate probe localhost:8443 --ca pki/ca-bundle.crt\n"
          "  tollgate probe localhost:8443 --ca pki/ca-bundle.crt --cert pki/alice.crt \\\n"
          "      --key pki/alice.key\n"
          "  tollgate probe 10.0.0.5:443 --sni api.example.com --tls1.2 --json\n"
          "\n"
          "exit codes: 0 the server accepts and every check passes, 1 otherwise,\n"
          "2 usage error.\n",
          out);
}

static void print_steps(const json_t *steps)
{
    size_t i;
    const json_t *s;
    json_array_foreach(steps, i, s)
    {
        const char *detail = pki_json_get_str(s, "detail", NULL);
        if (detail != NULL)
            printf("%s %-20s %s\n", pki_json_get_str(s, "dir", "?"),
                   pki_json_get_str(s, "message", "?"), detail);
        else
            printf("%s %s\n", pki_json_get_str(s, "dir", "?"), pki_json_get_str(s, "message", "?"));
    }
}

static void print_chain(const json_t *chain)
{
    size_t i;
    const json_t *c;
    if (json_array_size(chain) == 0)
        return;
    printf("server chain as received:\n");
    json_array_foreach(chain, i, c)
    {
        printf("  %zu subject %s\n", i, pki_json_get_str(c, "subject", "?"));
        printf("    issuer  %s\n", pki_json_get_str(c, "issuer", "?"));
        printf("    valid   %s to %s (%lld days left), %s\n",
               pki_json_get_str(c, "not_before", "?"), pki_json_get_str(c, "not_after", "?"),
               (long long)json_integer_value(json_object_get(c, "days_left")),
               pki_json_get_str(c, "key", "?"));
        printf("    SHA-256 %s\n", pki_json_get_str(c, "sha256_fingerprint", "?"));
    }
}

static void print_client_cert(const json_t *res)
{
    const json_t *req = json_object_get(res, "certificate_request");
    const json_t *mine = json_object_get(res, "client_certificate");
    size_t i;
    const json_t *n;
    if (!json_is_true(json_object_get(req, "seen"))) {
        printf("client certificate: not requested by the server%s\n",
               json_is_true(json_object_get(mine, "configured")) ? " (ours was not sent)" : "");
        return;
    }
    const json_t *names = json_object_get(req, "ca_names");
    printf("client certificate: requested; CA names the server accepts:%s\n",
           json_array_size(names) ? "" : " (none listed)");
    json_array_foreach(names, i, n) printf("  %s\n", json_string_value(n));
    if (!json_is_true(json_object_get(mine, "configured"))) {
        printf("  we sent none (give --cert and --key)\n");
        return;
    }
    const json_t *listed = json_object_get(mine, "issuer_listed");
    printf("  ours: %s%s\n", pki_json_get_str(mine, "subject", "?"),
           json_is_false(listed) ? " (its issuer is not among those names)" : "");
    const json_t *accepted = json_object_get(mine, "accepted");
    if (!json_is_true(json_object_get(mine, "sent")))
        printf("  not sent\n");
    else
        printf("  sent; %s\n", json_is_true(accepted) ? "accepted" : "refused");
}

void pki_probe_print(const json_t *res)
{
    const json_t *outcome = json_object_get(res, "outcome");
    const char *stage = pki_json_get_str(outcome, "stage", "");
    bool is_connected = strcmp(stage, "resolve") != 0 && strcmp(stage, "connect") != 0;
    printf("probe %s\n", pki_json_get_str(res, "target", "?"));
    print_steps(json_object_get(res, "steps"));
    if (is_connected) {
        const json_t *chain = json_object_get(res, "server_chain");
        print_chain(chain);
        if (json_array_size(chain) > 0) {
            printf("checks on the server certificate:\n");
            pki_checks_print(json_object_get(res, "checks"), "  ");
        } else {
            printf("checks on the server certificate: none (no certificate was received)\n");
        }
        print_client_cert(res);
        pki_probe_ocsp_print(json_object_get(res, "ocsp_staple"));
    }
    const char *verdict = json_is_true(json_object_get(outcome, "accepted"))  ? "ACCEPTED"
                          : !is_connected                                     ? "NO CONNECTION"
                          : json_is_string(json_object_get(outcome, "alert")) ? "REFUSED"
                                                                              : "FAILED";
    const char *reason = pki_json_get_str(outcome, "reason", NULL);
    printf("outcome: %s%s%s%s: %s\n", verdict, reason ? " (" : "", reason ? reason : "",
           reason ? ")" : "", pki_json_get_str(outcome, "meaning", ""));
    const json_t *ocsp = json_object_get(res, "ocsp_staple");
    bool is_checks_ok = !json_is_string(json_object_get(res, "checks_reason"));
    if (json_is_true(json_object_get(res, "ok")))
        printf("result: OK\n");
    else if (json_is_true(json_object_get(outcome, "accepted")) && is_checks_ok &&
             strcmp(pki_json_get_str(ocsp, "verdict", ""), "fail") == 0)
        printf("result: FAILED: the stapled OCSP response is a problem (%s)\n",
               pki_json_get_str(ocsp, "reason", "?"));
    else if (json_is_true(json_object_get(outcome, "accepted")))
        printf("result: FAILED: a check on the server certificate failed (%s)\n",
               pki_json_get_str(res, "checks_reason", "?"));
    else
        printf("result: FAILED (%s)\n", pki_json_get_str(outcome, "reason", "?"));
}

int pki_cmd_probe(int argc, char **argv)
{
    struct pki_probe_opts o = {0};
    const char *crls[PROBE_MAX_CRLS];
    bool is_json = false;
    o.crls = crls;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        int m = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            is_json = true;
        } else if (strcmp(a, "--tls1.2") == 0 || strcmp(a, "--tls1.3") == 0) {
            o.min_version = o.max_version = a[7] == '2' ? TLS1_2_VERSION : TLS1_3_VERSION;
        } else if ((m = pki_opt(argc, argv, &i, "--sni", &v)) > 0) {
            o.sni = v;
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--ca", &v)) > 0) {
            o.ca = v;
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--cert", &v)) > 0) {
            o.cert = v;
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--key", &v)) > 0) {
            o.key = v;
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--password-file", &v)) > 0) {
            o.password_file = v;
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--crl", &v)) > 0) {
            if (o.n_crls == PROBE_MAX_CRLS) {
                fprintf(stderr, "tollgate probe: at most %d --crl files\n", PROBE_MAX_CRLS);
                return 2;
            }
            crls[o.n_crls++] = v;
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--timeout", &v)) > 0) {
            char *end = NULL;
            errno = 0;
            long s = strtol(v, &end, 10);
            if (errno != 0 || end == v || *end != '\0' || s < 1 || s > 300) {
                fprintf(stderr, "tollgate probe: --timeout takes whole seconds, 1 to 300\n");
                return 2;
            }
            o.handshake_timeout_ms = (int)s * 1000;
        } else if (m < 0) {
            fprintf(stderr, "tollgate probe: %s needs a value\n", a);
            return 2;
        } else if ((a[0] == '-' && a[1] != '\0') || o.target != NULL) {
            return suggest_usage_error(stderr, "probe", a, probe_opts, TG_ARRAY_LEN(probe_opts));
        } else {
            o.target = a;
        }
    }
    if (o.target == NULL) {
        usage(stderr);
        return 2;
    }
    char err[1200];
    json_t *res = NULL;
    if (pki_probe(&o, &res, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tollgate probe: %s\n", err);
        return 2;
    }
    if (is_json)
        pki_json_print(res);
    else
        pki_probe_print(res);
    int rc = json_is_true(json_object_get(res, "ok")) ? 0 : 1;
    json_decref(res);
    return rc;
}
