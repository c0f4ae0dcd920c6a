/* tollgate pki init DIR [--key ecdsa|rsa] [--hosts h1,h2] [--clients alice,bob] */
#include "pki/pki.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/suggest.h"

/* A comma-separated list split in place: items point into buf. */
struct pki_list {
    char *buf;          /* owned */
    const char **items; /* owned array */
    size_t n;
};

static const char *const init_opts[] = {"--key", "--hosts", "--clients", "--help"};

static void usage(FILE *out)
{
    fputs("usage: tollgate pki init DIR [--key ecdsa|rsa] [--hosts h1,h2]\n"
          "                         [--clients alice,bob]\n"
          "  Writes a development PKI into DIR (created if missing; files replaced): a\n"
          "  root and an intermediate CA, server certificates for localhost, client\n"
          "  certificates, a CRL, and PKCS#12 copies. Keys are mode 0600. Not for\n"
          "  production.\n"
          "\n"
          "options:\n"
          "  --key      key type of the CAs and client certificates (default ecdsa);\n"
          "             servers get both an ECDSA P-256 and an RSA-2048 certificate\n"
          "  --hosts    extra server names (DNS names or IP addresses) besides\n"
          "             localhost, 127.0.0.1 and ::1\n"
          "  --clients  client certificates to issue (default alice); a client named\n"
          "             \"revoked\" is always added and listed in clients.crl\n"
          "  -h, --help this help\n"
          "\n"
          "examples:\n"
          "  tollgate pki init pki\n"
          "  tollgate pki init /tmp/pki --hosts api.example.com,10.0.0.5 --clients bob\n"
          "  tollgate pki init pki --key rsa\n"
          "\n"
          "exit codes: 0 written, 1 it could not be written, 2 usage error.\n",
          out);
}

static void list_fini(struct pki_list *l)
{
    free(l->items);
    free(l->buf);
    memset(l, 0, sizeof(*l));
}

/* Splits "a,b,c"; false on an empty item or out of memory. */
static bool list_parse(struct pki_list *l, const char *s)
{
    list_fini(l);
    size_t n = 1;
    for (const char *p = s; *p != '\0'; p++)
        n += *p == ',';
    l->buf = strdup(s);
    l->items = calloc(n, sizeof(*l->items));
    if (l->buf == NULL || l->items == NULL)
        return false;
    char *item = l->buf;
    for (;;) {
        char *comma = strchr(item, ',');
        if (comma != NULL)
            *comma = '\0';
        if (*item == '\0')
            return false;
        l->items[l->n++] = item;
        if (comma == NULL)
            return true;
        item = comma + 1;
    }
}

/*
 * Matches "--name VALUE" and "--name=VALUE" at argv[*i]. Returns 0 when
 * argv[*i] is another argument, 1 with *value set (and *i advanced past a
 * separate value), -1 when the value is missing.
 */
static int option(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

static void print_files(const struct pki_init_opts *o)
{
    static const struct {
        const char *file;
        const char *what;
    } fixed[] = {
        {"root.crt", "root CA certificate (10 years)"},
        {"root.key", "root CA key"},
        {"intermediate.crt", "intermediate CA certificate, signed by the root (5 years)"},
        {"intermediate.key", "intermediate CA key"},
        {"ca-bundle.crt", "intermediate + root: what clients trust"},
        {"server-ecdsa.crt", "server certificate (ECDSA P-256) + intermediate"},
        {"server-ecdsa.key", "its key"},
        {"server-rsa.crt", "server certificate (RSA-2048) + intermediate"},
        {"server-rsa.key", "its key"},
    };
    printf("wrote a development PKI into %s (keys are mode 0600; not for production):\n", o->dir);
    for (size_t i = 0; i < TG_ARRAY_LEN(fixed); i++)
        printf("  %s/%-18s %s\n", o->dir, fixed[i].file, fixed[i].what);
    for (size_t i = 0; i <= o->n_clients; i++) {
        bool is_revoked = i == o->n_clients;
        char files[128];
        snprintf(files, sizeof(files), "%s.{crt,key,p12}", is_revoked ? "revoked" : o->clients[i]);
        printf("  %s/%-18s client certificate + intermediate, key, PKCS#12%s\n", o->dir, files,
               is_revoked ? "; listed in clients.crl" : "");
    }
    printf("  %s/%-18s %s\n", o->dir, "clients.crl", "CRLs of the intermediate and the root");
    printf("  %s/%-18s %s\n", o->dir, "p12-password.txt",
           "password of every .p12 file (random, new each run; mode 0600)");
}

static void print_next_steps(const struct pki_init_opts *o)
{
    const char *d = o->dir;
    const char *client = o->clients[0];
    printf("\nnext steps:\n"
           "  in tollgate.yaml:\n"
           "    certificates:\n"
           "      site:     { cert: %s/server-ecdsa.crt, key: %s/server-ecdsa.key }\n"
           "      site-rsa: { cert: %s/server-rsa.crt, key: %s/server-rsa.key }\n"
           "    client_cas:\n"
           "      partners: { ca: %s/root.crt, crl: %s/clients.crl }\n"
           "  then, with a mutual TLS listener on 8443:\n"
           "    curl --cacert %s/ca-bundle.crt --cert %s/%s.crt --key %s/%s.key "
           "https://localhost:8443/\n",
           d, d, d, d, d, d, d, d, client, d, client);
}

int pki_cmd_init(int argc, char **argv)
{
    static const char *const default_clients[] = {"alice"};
    struct pki_init_opts o = {.key = PKI_KEY_ECDSA};
    struct pki_list hosts = {0};
    struct pki_list clients = {0};
    char err[512];
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        int m;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            rc = 0;
            goto out;
        } else if ((m = option(argc, argv, &i, "--key", &v)) != 0) {
            if (m > 0 && strcmp(v, "ecdsa") == 0) {
                o.key = PKI_KEY_ECDSA;
            } else if (m > 0 && strcmp(v, "rsa") == 0) {
                o.key = PKI_KEY_RSA;
            } else {
                fprintf(stderr, "tollgate pki init: --key takes ecdsa or rsa\n");
                goto out;
            }
        } else if ((m = option(argc, argv, &i, "--hosts", &v)) != 0) {
            if (m < 0 || !list_parse(&hosts, v)) {
                fprintf(stderr, "tollgate pki init: --hosts takes names separated by commas, "
                                "e.g. --hosts api.example.com,10.0.0.5\n");
                goto out;
            }
        } else if ((m = option(argc, argv, &i, "--clients", &v)) != 0) {
            if (m < 0 || !list_parse(&clients, v)) {
                fprintf(stderr, "tollgate pki init: --clients takes names separated by commas, "
                                "e.g. --clients alice,bob\n");
                goto out;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            suggest_usage_error(stderr, "pki init", a, init_opts, TG_ARRAY_LEN(init_opts));
            goto out;
        } else if (o.dir == NULL) {
            o.dir = a;
        } else {
            fprintf(stderr, "tollgate pki init: one directory only (got \"%s\" and \"%s\")\n",
                    o.dir, a);
            goto out;
        }
    }
    if (o.dir == NULL) {
        usage(stderr);
        goto out;
    }
    o.hosts = hosts.items;
    o.n_hosts = hosts.n;
    o.clients = clients.n > 0 ? clients.items : default_clients;
    o.n_clients = clients.n > 0 ? clients.n : TG_ARRAY_LEN(default_clients);
    enum tg_status st = pki_init(&o, err, sizeof(err));
    if (st != TG_OK) {
        fprintf(stderr, "tollgate pki init: %s\n", err);
        /* A name we refused is the caller's mistake; anything else ours. */
        rc = st == TG_E_CONFIG ? 2 : 1;
        goto out;
    }
    print_files(&o);
    print_next_steps(&o);
    rc = 0;
out:
    list_fini(&clients);
    list_fini(&hosts);
    return rc;
}
