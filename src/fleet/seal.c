#include "fleet/seal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "core/file.h"
#include "fleet/b64.h"

#define NONCE_LEN  12 /* AES-GCM's own IV size (NIST SP 800-38D §8.2) */
#define TAG_LEN    16
#define PREFIX_LEN (sizeof(FLEET_TOKEN_PREFIX) - 1)
#define CT_MAX     (FLEET_TICKETS_MAX + TAG_LEN)

/* Changing either makes every node derive another key: a new token prefix
 * and version go with it. */
static const char hkdf_salt[] = "tollgate fleet";
static const char hkdf_info[] = "session ticket keys v1";

void fleet_secret_wipe(struct fleet_secret *s)
{
    if (s != NULL)
        OPENSSL_cleanse(s, sizeof(*s));
}

enum tg_status fleet_secret_derive(const uint8_t *ikm, size_t len, struct fleet_secret *out)
{
    enum tg_status st = TG_E_INTERNAL;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)hkdf_salt,
                                          sizeof(hkdf_salt) - 1),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)hkdf_info,
                                          sizeof(hkdf_info) - 1),
        OSSL_PARAM_construct_end(),
    };
    if (ctx != NULL && len > 0 && EVP_KDF_derive(ctx, out->key, sizeof(out->key), params) == 1)
        st = TG_OK;
    else
        fleet_secret_wipe(out);
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return st;
}

enum tg_status fleet_secret_load(const char *path, struct fleet_secret *out, char *err,
                                 size_t err_len)
{
    enum tg_status st = TG_E_CONFIG;
    char *data = NULL, why[256];
    size_t len = 0;
    struct stat sb;
    fleet_secret_wipe(out);
    /* The mode is looked at before a byte is read. Whoever could swap the
     * file in between could as well write the secret: the check is against
     * a file left readable, not against the directory's owner. */
    if (stat(path, &sb) != 0) {
        snprintf(err, err_len, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, err_len, "%s: not a regular file", path);
        goto out;
    }
    if ((sb.st_mode & 077) != 0) {
        snprintf(err, err_len,
                 "%s: group or others have access to it (mode %03o); a fleet secret must be "
                 "the owner's alone: chmod 600 %s",
                 path, (unsigned)(sb.st_mode & 0777), path);
        goto out;
    }
    st = tg_read_file(path, FLEET_SECRET_MAX, &data, &len, why, sizeof(why));
    if (st != TG_OK) {
        snprintf(err, err_len, "%s: %s", path, why);
        goto out;
    }
    /* One final newline, as an editor or `echo` leaves it, is not secret. */
    size_t n = len > 0 && data[len - 1] == '\n' ? len - 1 : len;
    if (n < FLEET_SECRET_MIN) {
        snprintf(err, err_len,
                 "%s: holds %zu bytes; a fleet secret needs at least %d (for example the output "
                 "of: openssl rand -base64 48)",
                 path, n, FLEET_SECRET_MIN);
        st = TG_E_CONFIG;
        goto out;
    }
    st = fleet_secret_derive((const uint8_t *)data, n, out);
    if (st != TG_OK)
        snprintf(err, err_len, "%s: cannot derive the sealing key (OpenSSL's HKDF failed)", path);
out:
    if (data != NULL)
        OPENSSL_cleanse(data, len);
    free(data);
    return st;
}

/* ---- the plaintext ---- */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Whether s is a set a node may publish: 1 to TICKET_KEYS_MAX keys, enc one
 * of them, no name twice (ticket_set_find would find only the first). */
static bool set_is_sound(const struct ticket_set *s, char *err, size_t err_len)
{
    if (s->n == 0 || s->n > TICKET_KEYS_MAX) {
        snprintf(err, err_len, "holds %zu keys; 1 to %d allowed", s->n, TICKET_KEYS_MAX);
        return false;
    }
    if (s->enc >= s->n) {
        snprintf(err, err_len, "names key %zu of %zu keys to encrypt", s->enc, s->n);
        return false;
    }
    for (size_t i = 1; i < s->n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (memcmp(ticket_key_name(&s->v[i]), ticket_key_name(&s->v[j]), TICKET_NAME_LEN) ==
                0) {
                snprintf(err, err_len, "keys %zu and %zu have the same name", j, i);
                return false;
            }
        }
    }
    return true;
}

size_t fleet_tickets_encode(const struct ticket_set *set, uint64_t rotated_at, uint64_t generation,
                            uint8_t out[FLEET_TICKETS_MAX])
{
    char why[96];
    if (!set_is_sound(set, why, sizeof(why)))
        return 0;
    put_u32(out, FLEET_TICKETS_VERSION);
    put_u64(out + 4, rotated_at);
    put_u64(out + 12, generation);
    put_u32(out + 20, (uint32_t)set->n);
    put_u32(out + 24, (uint32_t)set->enc);
    for (size_t i = 0; i < set->n; i++)
        memcpy(out + FLEET_TICKETS_HDR + i * TICKET_KEY_LEN, set->v[i].bytes, TICKET_KEY_LEN);
    return FLEET_TICKETS_HDR + set->n * TICKET_KEY_LEN;
}

enum tg_status fleet_tickets_decode(const uint8_t *pt, size_t len, struct ticket_set *set,
                                    uint64_t *rotated_at, uint64_t *generation, char *err,
                                    size_t err_len)
{
    char why[96];
    ticket_set_wipe(set);
    *rotated_at = 0;
    *generation = 0;
    if (len < FLEET_TICKETS_HDR) {
        snprintf(err, err_len, "sealed ticket keys: %zu bytes, shorter than their header", len);
        return TG_E_PROTO;
    }
    uint32_t version = get_u32(pt), n = get_u32(pt + 20);
    if (version != FLEET_TICKETS_VERSION) {
        snprintf(err, err_len, "sealed ticket keys: version %" PRIu32 ", not %d", version,
                 FLEET_TICKETS_VERSION);
        return TG_E_PROTO;
    }
    if (n == 0 || n > TICKET_KEYS_MAX) {
        snprintf(err, err_len, "sealed ticket keys: holds %" PRIu32 " keys; 1 to %d allowed", n,
                 TICKET_KEYS_MAX);
        return TG_E_PROTO;
    }
    size_t want = FLEET_TICKETS_HDR + (size_t)n * TICKET_KEY_LEN;
    if (len != want) {
        snprintf(err, err_len, "sealed ticket keys: %zu bytes where %" PRIu32 " keys take %zu (%s)",
                 len, n, want, len < want ? "truncated" : "trailing bytes");
        return TG_E_PROTO;
    }
    set->n = n;
    set->enc = get_u32(pt + 24);
    for (size_t i = 0; i < n; i++)
        memcpy(set->v[i].bytes, pt + FLEET_TICKETS_HDR + i * TICKET_KEY_LEN, TICKET_KEY_LEN);
    if (!set_is_sound(set, why, sizeof(why))) {
        ticket_set_wipe(set);
        snprintf(err, err_len, "sealed ticket keys: %s", why);
        return TG_E_PROTO;
    }
    *rotated_at = get_u64(pt + 4);
    *generation = get_u64(pt + 12);
    return TG_OK;
}

/* ---- sealing ---- */

/* AES-256-GCM of pt[0..len) with aad into ct (len bytes) and tag. */
static bool gcm_seal(const struct fleet_secret *s, const uint8_t nonce[NONCE_LEN], const char *aad,
                     const uint8_t *pt, size_t len, uint8_t *ct, uint8_t tag[TAG_LEN])
{
    size_t aad_len = strlen(aad);
    int n = 0;
    if (aad_len > INT_MAX || len > INT_MAX)
        return false;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    bool is_ok = ctx != NULL &&
                 EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, s->key, nonce) == 1 &&
                 EVP_EncryptUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)aad_len) == 1 &&
                 EVP_EncryptUpdate(ctx, ct, &n, pt, (int)len) == 1 &&
                 EVP_EncryptFinal_ex(ctx, ct + len, &n) == 1 &&
                 EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return is_ok;
}

/* The reverse of gcm_seal: TG_E_PROTO when the tag does not match (pt then
 * holds unauthenticated bytes, to be wiped), TG_E_INTERNAL when OpenSSL
 * fails otherwise. */
static enum tg_status gcm_open(const struct fleet_secret *s, const uint8_t nonce[NONCE_LEN],
                               const char *aad, const uint8_t *ct, size_t len, uint8_t tag[TAG_LEN],
                               uint8_t *pt)
{
    size_t aad_len = strlen(aad);
    int n = 0;
    if (aad_len > INT_MAX || len > INT_MAX)
        return TG_E_INTERNAL;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    bool is_ok = ctx != NULL &&
                 EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, s->key, nonce) == 1 &&
                 EVP_DecryptUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)aad_len) == 1 &&
                 EVP_DecryptUpdate(ctx, pt, &n, ct, (int)len) == 1 &&
                 EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1;
    enum tg_status st = !is_ok                                        ? TG_E_INTERNAL
                        : EVP_DecryptFinal_ex(ctx, pt + len, &n) == 1 ? TG_OK
                                                                      : TG_E_PROTO;
    EVP_CIPHER_CTX_free(ctx);
    return st;
}

char *fleet_tickets_seal(const struct fleet_secret *s, const char *aad,
                         const struct ticket_set *set, uint64_t rotated_at, uint64_t generation)
{
    char *token = NULL, *nonce_b64 = NULL, *ct_b64 = NULL;
    uint8_t pt[FLEET_TICKETS_MAX], ct[CT_MAX], nonce[NONCE_LEN];
    /* A random nonce per seal: a key seals a few tokens a day, far from the
     * 2^32 seals NIST SP 800-38D §8.3 allows random 96-bit nonces. */
    size_t len = fleet_tickets_encode(set, rotated_at, generation, pt);
    if (len == 0 || RAND_bytes(nonce, NONCE_LEN) != 1 ||
        !gcm_seal(s, nonce, aad, pt, len, ct, ct + len))
        goto out;
    nonce_b64 = fleet_b64_encode(nonce, NONCE_LEN);
    ct_b64 = fleet_b64_encode(ct, len + TAG_LEN);
    if (nonce_b64 == NULL || ct_b64 == NULL)
        goto out;
    size_t size = PREFIX_LEN + strlen(nonce_b64) + 1 + strlen(ct_b64) + 1;
    token = malloc(size);
    if (token != NULL)
        snprintf(token, size, "%s%s.%s", FLEET_TOKEN_PREFIX, nonce_b64, ct_b64);
out:
    OPENSSL_cleanse(pt, sizeof(pt));
    free(ct_b64);
    free(nonce_b64);
    return token;
}

enum tg_status fleet_tickets_open(const struct fleet_secret *s, const char *aad, const char *token,
                                  size_t len, struct ticket_set *set, uint64_t *rotated_at,
                                  uint64_t *generation, char *err, size_t err_len)
{
    enum tg_status st = TG_E_PROTO;
    uint8_t *nonce = NULL, *ct = NULL, pt[CT_MAX];
    size_t nonce_len = 0, ct_len = 0;
    ticket_set_wipe(set);
    *rotated_at = 0;
    *generation = 0;
    if (len > FLEET_TOKEN_MAX) {
        snprintf(err, err_len, "sealed ticket keys: %zu bytes, more than %d", len, FLEET_TOKEN_MAX);
        goto out;
    }
    if (len < PREFIX_LEN || memcmp(token, FLEET_TOKEN_PREFIX, PREFIX_LEN) != 0) {
        snprintf(err, err_len, "sealed ticket keys: no \"%s\" prefix", FLEET_TOKEN_PREFIX);
        goto out;
    }
    const char *p = token + PREFIX_LEN, *end = token + len;
    const char *dot = memchr(p, '.', (size_t)(end - p));
    if (dot == NULL) {
        snprintf(err, err_len, "sealed ticket keys: no '.' after the nonce");
        goto out;
    }
    if (!fleet_b64_decode(p, (size_t)(dot - p), NONCE_LEN, &nonce, &nonce_len) ||
        nonce_len != NONCE_LEN) {
        snprintf(err, err_len, "sealed ticket keys: the nonce is not %d bytes of base64",
                 NONCE_LEN);
        goto out;
    }
    if (!fleet_b64_decode(dot + 1, (size_t)(end - dot - 1), CT_MAX, &ct, &ct_len) ||
        ct_len < TAG_LEN) {
        snprintf(err, err_len, "sealed ticket keys: the ciphertext is not %d to %d bytes of base64",
                 TAG_LEN, CT_MAX);
        goto out;
    }
    size_t pt_len = ct_len - TAG_LEN;
    /* GCM's plaintext is not used, only wiped, unless the tag matches. */
    st = gcm_open(s, nonce, aad, ct, pt_len, ct + pt_len, pt);
    if (st != TG_OK) {
        snprintf(err, err_len, "%s",
                 st == TG_E_PROTO ? "sealed ticket keys: do not open (sealed with another secret "
                                    "or under another key name, or changed)"
                                  : "sealed ticket keys: OpenSSL's AES-GCM failed");
        goto out;
    }
    st = fleet_tickets_decode(pt, pt_len, set, rotated_at, generation, err, err_len);
out:
    OPENSSL_cleanse(pt, sizeof(pt));
    free(ct);
    free(nonce);
    return st;
}

/* ---- sealed files ---- */

char *fleet_seal(const struct fleet_secret *s, const char *aad, const uint8_t *data, size_t len)
{
    char *token = NULL, *nonce_b64 = NULL, *ct_b64 = NULL;
    uint8_t nonce[NONCE_LEN];
    if (len > FLEET_SEALED_MAX)
        return NULL;
    uint8_t *ct = malloc(len + TAG_LEN);
    if (ct == NULL || RAND_bytes(nonce, NONCE_LEN) != 1 ||
        !gcm_seal(s, nonce, aad, data, len, ct, ct + len))
        goto out;
    nonce_b64 = fleet_b64_encode(nonce, NONCE_LEN);
    ct_b64 = fleet_b64_encode(ct, len + TAG_LEN);
    if (nonce_b64 == NULL || ct_b64 == NULL)
        goto out;
    size_t size = sizeof(FLEET_FILE_PREFIX) + strlen(nonce_b64) + 1 + strlen(ct_b64);
    token = malloc(size);
    if (token != NULL)
        snprintf(token, size, "%s%s.%s", FLEET_FILE_PREFIX, nonce_b64, ct_b64);
out:
    free(ct);
    free(ct_b64);
    free(nonce_b64);
    return token;
}

enum tg_status fleet_open(const struct fleet_secret *s, const char *aad, const char *token,
                          size_t len, uint8_t **out, size_t *out_len, char *err, size_t err_len)
{
    static const size_t prefix_len = sizeof(FLEET_FILE_PREFIX) - 1;
    uint8_t *nonce = NULL, *ct = NULL, *pt = NULL;
    size_t nonce_len = 0, ct_len = 0;
    enum tg_status st = TG_E_PROTO;
    *out = NULL;
    *out_len = 0;
    const char *dot = len > prefix_len ? memchr(token + prefix_len, '.', len - prefix_len) : NULL;
    if (len < prefix_len || memcmp(token, FLEET_FILE_PREFIX, prefix_len) != 0 || dot == NULL ||
        !fleet_b64_decode(token + prefix_len, (size_t)(dot - token) - prefix_len, NONCE_LEN, &nonce,
                          &nonce_len) ||
        nonce_len != NONCE_LEN ||
        !fleet_b64_decode(dot + 1, len - (size_t)(dot + 1 - token), FLEET_SEALED_MAX + TAG_LEN, &ct,
                          &ct_len) ||
        ct_len < TAG_LEN) {
        snprintf(err, err_len, "sealed file: malformed");
        goto out;
    }
    size_t pt_len = ct_len - TAG_LEN;
    pt = malloc(pt_len + 1);
    if (pt == NULL) {
        st = TG_E_NOMEM;
        goto out;
    }
    st = gcm_open(s, nonce, aad, ct, pt_len, ct + pt_len, pt);
    if (st != TG_OK) {
        snprintf(err, err_len,
                 "sealed file: does not open (sealed with another secret, under "
                 "another key name, or changed)");
        OPENSSL_cleanse(pt, pt_len);
        free(pt);
        goto out;
    }
    pt[pt_len] = '\0';
    *out = pt;
    *out_len = pt_len;
out:
    free(ct);
    free(nonce);
    return st;
}
