/* tollgate: one binary for the daemon and its tooling. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/opensslv.h>

#include "admin/admin.h"
#include "master/master.h"
#include "pki/pki.h"

static void usage(FILE *out)
{
    fputs("usage:\n"
          "  tollgate run   -c tollgate.yaml      run in the foreground\n"
          "  tollgate check -c tollgate.yaml [-T] validate config, files, certificates;\n"
          "                                       -T prints it with every default\n"
          "  tollgate demo  [--dir DIR]           dev PKI + listeners + built-in backend\n"
          "  tollgate pki init DIR [--key ecdsa|rsa] [--hosts h1,h2] [--clients alice,bob]\n"
          "  tollgate cert inspect FILE...        PEM, DER, PKCS#7, PKCS#12: chain, dates\n"
          "  tollgate cert verify CERT --ca CA [--crl CRL] [--host NAME]\n"
          "                       [--purpose server|client]\n"
          "  tollgate cert match  --cert C --key K\n"
          "  tollgate cert convert IN -o OUT.pem [--password-file F]\n"
          "  tollgate probe HOST:PORT [--sni NAME] [--ca CA] [--cert C --key K] [--crl CRL]\n"
          "  tollgate version\n",
          out);
}

static bool check_wants_dump(int argc, char **argv)
{
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "-T") == 0)
            return true;
    return false;
}

/* tollgate check -T -c FILE */
static int check_dump(int argc, char **argv)
{
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0)
            return admin_cmd_check_dump(argv[i + 1]);
    fprintf(stderr, "usage: tollgate check -c tollgate.yaml -T\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0)
        return master_cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "check") == 0) {
        if (check_wants_dump(argc, argv))
            return check_dump(argc, argv);
        return master_cmd_check(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "demo") == 0)
        return master_cmd_demo(argc - 1, argv + 1);
    if (strcmp(cmd, "pki") == 0 && argc >= 3 && strcmp(argv[2], "init") == 0)
        return pki_cmd_init(argc - 2, argv + 2);
    if (strcmp(cmd, "cert") == 0)
        return pki_cmd_cert(argc - 1, argv + 1);
    if (strcmp(cmd, "probe") == 0)
        return pki_cmd_probe(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("tollgate %s (%s)\n", TG_VERSION, OPENSSL_VERSION_STR);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "tollgate: unknown command \"%s\"\n", cmd);
    usage(stderr);
    return 2;
}
