/*
 * Session tickets under the key set the master publishes (core/ticket.h).
 * The callback runs on every full handshake (encrypt) and every offered
 * ticket (decrypt): it copies the set from shared memory onto the stack,
 * wipes the copy before returning and allocates nothing itself.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tls/tls.h"

/* The RFC 5077 §4 layout OpenSSL uses for its own keys. */
#define TICKET_IV_LEN 16

static int g_shm_idx = -1;
static EVP_CIPHER *g_aes; /* fetched once, before the workers fork */

enum tg_status tls_ticket_key_generate(struct ticket_key *key)
{
    return RAND_bytes(key->bytes, sizeof(key->bytes)) == 1 ? TG_OK : TG_E_INTERNAL;
}

static bool set_hmac(EVP_MAC_CTX *hctx, const struct ticket_key *k)
{
    OSSL_PARAM params[3];
    params[0] =
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)ticket_key_hmac(k), 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params) == 1;
}

/* Returns (OpenSSL's contract): encrypt 1 ticket made, 0 none; decrypt 0
 * unknown key (full handshake), 1 good, 2 good but renew it; -1 error. */
static int ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    const struct ticket_shm *shm = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), g_shm_idx);
    struct ticket_set set;
    int rc = 0;
    if (shm == NULL || !ticket_shm_read(shm, &set) || set.n == 0 || set.enc >= set.n)
        goto out;
    if (enc) {
        const struct ticket_key *k = &set.v[set.enc];
        if (RAND_bytes(iv, TICKET_IV_LEN) != 1)
            goto out;
        memcpy(name, ticket_key_name(k), TICKET_NAME_LEN);
        if (EVP_EncryptInit_ex(cctx, g_aes, NULL, ticket_key_aes(k), iv) != 1 || !set_hmac(hctx, k))
            rc = -1;
        else
            rc = 1;
        goto out;
    }
    bool is_current = false;
    const struct ticket_key *k = ticket_set_find(&set, name, &is_current);
    if (k == NULL)
        goto out;
    if (!set_hmac(hctx, k) || EVP_DecryptInit_ex(cctx, g_aes, NULL, ticket_key_aes(k), iv) != 1)
        rc = -1;
    else if (!is_current || SSL_version(ssl) >= TLS1_3_VERSION)
        rc = 2; /* renew: TLS 1.3 sends a fresh ticket after a resumption
                 * only when asked to, as OpenSSL's own keys would */
    else
        rc = 1;
out:
    OPENSSL_cleanse(&set, sizeof(set));
    return rc;
}

enum tg_status tls_ticket_use(SSL_CTX *ctx, const struct ticket_shm *shm)
{
    if (g_shm_idx < 0)
        g_shm_idx = SSL_CTX_get_ex_new_index(0, "tollgate ticket keys", NULL, NULL, NULL);
    if (g_aes == NULL)
        g_aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    if (g_shm_idx < 0 || g_aes == NULL || shm == NULL)
        return TG_E_INTERNAL;
    if (SSL_CTX_set_ex_data(ctx, g_shm_idx, (void *)shm) != 1 ||
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1)
        return TG_E_INTERNAL;
    return TG_OK;
}
