/* tollgate cert inspect|verify|match|convert: dispatch and overall usage. */
#include "pki/internal.h"
#include "pki/pki.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fputs("usage:\n"
          "  tollgate cert inspect FILE... [--password-file F] [--json]\n"
          "  tollgate cert verify CERT [--ca CA] [--crl CRL]... [--host NAME]\n"
          "                       [--purpose server|client] [--at TIME] [--json]\n"
          "  tollgate cert match --cert C --key K [--json]\n"
          "  tollgate cert convert IN -o OUT.pem [--key-out KEY.pem] [--password-file F]\n"
          "Files may be PEM, DER, PKCS#7 or PKCS#12. \"tollgate cert SUBCOMMAND --help\" says "
          "more.\n",
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
    fprintf(stderr, "tollgate cert: unknown subcommand \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
