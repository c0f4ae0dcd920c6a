/*
 * Fuzz target for the checks every OCSP response passes before it is
 * stapled (tls_ocsp_check): any bytes as a response about a fixed leaf and
 * its issuer, at a fixed time, so that the seeds (responses those two
 * certificates' CA signed, kept in corpus/ocsp) reach the signature, match
 * and date checks. Property: an accepted response is about this leaf and
 * current at that time. Built with -fsanitize=fuzzer and -DTG_LIBFUZZER it
 * fuzzes; otherwise the replay main() runs every file of the corpus.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "fuzz_common.h"
#include "tls/tls.h"

/* 2027-01-15: inside the seeds' thisUpdate (2026-01-01) .. nextUpdate (2035-01-01). */
#define FUZZ_NOW 1800000000

static const char ca_pem[] = "-----BEGIN CERTIFICATE-----\n"
                             "MIIBJjCBzqADAgECAgEBMAoGCCqGSM49BAMCMBIxEDAOBgNVBAMMB2Z1enogY2Ew\n"
                             "IBcNMjAwMTAxMDAwMDAwWhgPMjEyMDAxMDEwMDAwMDBaMBIxEDAOBgNVBAMMB2Z1\n"
                             "enogY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATifXN+2xTeGy58llaq9UWQ\n"
                             "wFpECd3NdrT9NQgnkb/0RaPdHRWrYcZsUGpy0oXrBMWrfqUBUzfw3Ag4PxeF03c3\n"
                             "oxMwETAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIHz4QamTk8m9\n"
                             "fV9XXscy5+8pqnPbYQc1YQKroc8f/vo1AiA2jx4BlYFqrCR4rhOfTc2hjVKb9mBK\n"
                             "a4/Qp1XHnQXtBQ==\n"
                             "-----END CERTIFICATE-----\n";

static const char leaf_pem[] = "-----BEGIN CERTIFICATE-----\n"
                               "MIIBFDCBu6ADAgECAgECMAoGCCqGSM49BAMCMBIxEDAOBgNVBAMMB2Z1enogY2Ew\n"
                               "IBcNMjAwMTAxMDAwMDAwWhgPMjEyMDAxMDEwMDAwMDBaMBQxEjAQBgNVBAMMCWxv\n"
                               "Y2FsaG9zdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABGtzQGsWksxTyp2Xxte5\n"
                               "C640HAsJUDMuABNwReahzE7c/vYQRa1jTNyiWUDee8ue0mTdgTge0IbNjDnzkLlr\n"
                               "iikwCgYIKoZIzj0EAwIDSAAwRQIhAJaL7+EvNvOaNsM8g5jjC+7imA0BLluAzMQl\n"
                               "puVqLdhnAiATKePjDmb1oHsrncWCrxfSIHPswC9hArtsWG962F6F5w==\n"
                               "-----END CERTIFICATE-----\n";

static X509 *read_pem(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    CHECK(x != NULL);
    return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static X509 *ca, *leaf;
    if (ca == NULL) {
        ca = read_pem(ca_pem);
        leaf = read_pem(leaf_pem);
    }
    struct tls_ocsp_facts f;
    const char *reason = NULL;
    char detail[300];
    enum tg_status st =
        tls_ocsp_check(data, size, leaf, ca, FUZZ_NOW, &f, &reason, detail, sizeof(detail));
    CHECK(memchr(detail, '\0', sizeof(detail)) != NULL);
    if (st != TG_OK) {
        CHECK(reason != NULL);
        return 0;
    }
    CHECK(reason == NULL);
    CHECK(size >= 1 && size <= OCSP_RESP_MAX);
    CHECK(f.this_update <= FUZZ_NOW + TLS_OCSP_LEEWAY);
    CHECK(f.next_update > FUZZ_NOW && f.next_update > f.this_update);
    CHECK(f.status == TLS_OCSP_GOOD || f.status == TLS_OCSP_REVOKED ||
          f.status == TLS_OCSP_UNKNOWN);
    /* What passes for a staple passes for the client-certificate cache. */
    struct tls_ocsp_facts g;
    CHECK(tls_ocsp_check_ex(data, size, leaf, ca, FUZZ_NOW, TLS_OCSP_NO_NEXT_UPDATE_OK, &g, &reason,
                            detail, sizeof(detail)) == TG_OK);
    CHECK(g.next_update == f.next_update && g.status == f.status);
    return 0;
}
