/* tollgate cert inspect|verify|match|convert: dispatch and overall usage. */
#include "pki/internal.h"
#include "pki/pki.h"

#include <stdio.h>
#include <string.h>

#include "core/suggest.h"

static void usage(FILE *out)
{
    fputs("usage: tollgate cert SUBCOMMAND [OPTIONS]\n"
          "  Answers the usual certificate questions with OpenSSL's C API. Files may be\n"
          "  PEM, DER, PKCS#7 or PKCS#12; every subcommand takes --json.\n"
          "\n"
          "subcommands:\n"
          "  inspect FILE... [--password-file F]\n"
          "      every certificate and key, the chain as found, what is wrong with it\n"
          "  verify CERT [--ca CA] [--crl CRL]... [--host NAME] [--purpose server|client]\n"
          "              [--at TIME]\n"
          "      the checks a TLS peer makes, one by one, with the reason codes of the logs\n"
          "  match --cert C --key K\n"
          "      whether the key belongs to the certificate\n"
          "  convert IN -o OUT.pem [--key-out KEY.pem] [--password-file F]\n"
          "      to PEM, leaf first, the key unencrypted in its own file\n"
          "\"tollgate cert SUBCOMMAND --help\" says more.\n"
          "\n"
          "examples:\n"
          "  tollgate cert inspect pki/alice.p12 --password-file pki/p12-password.txt\n"
          "  tollgate cert verify pki/alice.crt --ca pki/ca-bundle.crt \\\n"
          "      --crl pki/clients.crl --purpose client\n"
          "  tollgate cert match --cert pki/server-ecdsa.crt --key pki/server-ecdsa.key\n"
          "  tollgate cert convert site.pfx -o site.pem --password-file pfx-pass.txt\n"
          "\n"
          "exit codes: 0 good, 1 bad (rejected, mismatch, unreadable), 2 usage error.\n",
          out);
}

int pki_cmd_cert(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } subs[] = {
        {"inspect", pki_cmd_inspect},
        {"verify", pki_cmd_verify},
        {"match", pki_cmd_match},
        {"convert", pki_cmd_convert},
    };
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    for (size_t i = 0; i < TG_ARRAY_LEN(subs); i++)
        if (strcmp(argv[1], subs[i].name) == 0)
            return subs[i].run(argc - 1, argv + 1);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    static const char *const names[] = {"inspect", "verify", "match", "convert", "--help"};
    if (argv[1][0] == '-')
        return suggest_usage_error(stderr, "cert", argv[1], names, TG_ARRAY_LEN(names));
    suggest_print_unknown(stderr, "tollgate cert", "subcommand", argv[1], names,
                          TG_ARRAY_LEN(names) - 1);
    fprintf(stderr, "see \"tollgate cert --help\"\n");
    return 2;
}
