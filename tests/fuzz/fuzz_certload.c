/*
 * Fuzz target for the certificate loader and the tools built on it: any
 * bytes as a file through tls_read_file (without and with a password),
 * tls_read_crls, pki_inspect and the client-side checks. Built with
 * -fsanitize=fuzzer and -DTG_LIBFUZZER it fuzzes; otherwise the replay
 * main() runs every file of the corpus directory given as argv[1].
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "pki/internal.h"
#include "pki/pki.h"
#include "tls/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The loader reads files; one temporary file holds each input in turn. */
static char input_path[] = "/tmp/tg-fuzz-certload-XXXXXX";
static int input_fd = -1;

static void remove_input(void)
{
    if (input_fd >= 0) {
        close(input_fd);
        unlink(input_path);
    }
}

static bool write_input(const uint8_t *data, size_t size)
{
    if (input_fd < 0) {
        /* Never wait for a password on a terminal. */
        if (freopen("/dev/null", "r", stdin) == NULL)
            return false;
        input_fd = mkstemp(input_path);
        if (input_fd < 0)
            return false;
        atexit(remove_input);
    }
    if (ftruncate(input_fd, 0) != 0)
        return false;
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(input_fd, data + done, size - done, (off_t)done);
        if (n <= 0)
            return false;
        done += (size_t)n;
    }
    return true;
}

/* The checks a client makes, on whatever certificates the input held. */
static void check_certs(STACK_OF(X509) *certs)
{
    X509_STORE *store = X509_STORE_new();
    json_t *checks = json_array();
    const char *reason = NULL;
    json_t *chain = NULL;
    struct pki_check_opts o = {
        .trust = store,
        .trust_label = "an empty store",
        .name = "localhost",
        .name_flag = "--host",
        .purpose = X509_PURPOSE_SSL_SERVER,
    };
    if (store != NULL && checks != NULL && sk_X509_num(certs) > 0)
        pki_check_chain(sk_X509_value(certs, 0), certs, &o, checks, &chain, &reason);
    json_decref(chain);
    json_decref(checks);
    X509_STORE_free(store);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const passwords[] = {NULL, "tollgate"};
    char err[512];
    if (!write_input(data, size))
        return 0;
    for (size_t i = 0; i < 2; i++) {
        STACK_OF(X509) *certs = NULL;
        EVP_PKEY *key = NULL;
        if (tls_read_file(input_path, passwords[i], &certs, &key, err, sizeof(err)) == TG_OK) {
            if (i == 0)
                check_certs(certs);
            sk_X509_pop_free(certs, X509_free);
            EVP_PKEY_free(key);
        }
    }
    STACK_OF(X509_CRL) *crls = NULL;
    if (tls_read_crls(input_path, &crls, err, sizeof(err)) == TG_OK)
        sk_X509_CRL_pop_free(crls, X509_CRL_free);
    json_t *f = NULL;
    if (pki_inspect(input_path, NULL, 1767225600, &f, err, sizeof(err)) == TG_OK) {
        char *text = json_dumps(f, 0); /* every string must be valid UTF-8 */
        if (text == NULL)
            abort();
        free(text);
        json_decref(f);
    }
    ERR_clear_error();
    return 0;
}

#ifndef TG_LIBFUZZER
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        if (r == 0)
            break;
        len += r;
    }
    fclose(f);
    (void)LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    DIR *dir = opendir(argv[1]);
    if (dir == NULL) {
        perror(argv[1]);
        return 1;
    }
    int n = 0, failed = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", argv[1], e->d_name);
        if (replay_file(path) != 0)
            failed++;
        n++;
    }
    closedir(dir);
    printf("replayed %d inputs, %d unreadable\n", n, failed);
    return failed == 0 && n > 0 ? 0 : 1;
}
#endif
