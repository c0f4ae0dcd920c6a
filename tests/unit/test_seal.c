/* seal (src/fleet/seal.c): the fleet secret file, the sealing key, and the
 * sealed session-ticket keys etcd carries. Tokens with a malformed
 * plaintext are sealed here by the test's own AES-GCM, which checks the
 * token format against a second writing of it. */
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "fleet/b64.h"
#include "fleet/seal.h"
#include "unit_tmpdir.h"

static const char aad[] = "/tollgate/fleet/tickets";
static char err[512];
static char dir[] = "/tmp/test_seal.XXXXXX";

static void secret_of(struct fleet_secret *s, uint8_t fill)
{
    uint8_t ikm[FLEET_SECRET_MIN];
    memset(ikm, fill, sizeof(ikm));
    assert_int_equal(fleet_secret_derive(ikm, sizeof(ikm), s), TG_OK);
}

/* n keys with distinct names (key i is filled with seed + i). */
static void set_of(struct ticket_set *set, size_t n, size_t enc, uint8_t seed)
{
    ticket_set_wipe(set);
    set->n = n;
    set->enc = enc;
    for (size_t i = 0; i < n && i < TICKET_KEYS_MAX; i++)
        memset(set->v[i].bytes, seed + (int)i, TICKET_KEY_LEN);
}

static enum tg_status open_tok(const struct fleet_secret *s, const char *a, const char *tok,
                               size_t len, struct ticket_set *set, uint64_t *rot, uint64_t *gen)
{
    /* Filled, so that a failure must wipe it. */
    memset(set, 0xa5, sizeof(*set));
    *rot = *gen = 77;
    err[0] = '\0';
    return fleet_tickets_open(s, a, tok, len, set, rot, gen, err, sizeof(err));
}

static void assert_wiped(const struct ticket_set *set, uint64_t rot, uint64_t gen)
{
    static const struct ticket_set zero;
    assert_memory_equal(set, &zero, sizeof(zero));
    assert_int_equal(rot, 0);
    assert_int_equal(gen, 0);
    assert_true(err[0] != '\0');
}

static void assert_refused(const struct fleet_secret *s, const char *a, const char *tok, size_t len,
                           const char *why)
{
    struct ticket_set set;
    uint64_t rot, gen;
    assert_int_equal(open_tok(s, a, tok, len, &set, &rot, &gen), TG_E_PROTO);
    assert_wiped(&set, rot, gen);
    if (why != NULL && strstr(err, why) == NULL)
        fail_msg("error \"%s\" does not say \"%s\"", err, why);
}

/* ---- seal and open ---- */

static void test_round_trip(void **state)
{
    (void)state;
    struct fleet_secret s;
    struct ticket_set set, got;
    uint64_t rot, gen;
    secret_of(&s, 1);
    for (size_t n = 1; n <= TICKET_KEYS_MAX; n++) {
        set_of(&set, n, n - 1, (uint8_t)(16 * n));
        char *tok = fleet_tickets_seal(&s, aad, &set, 1700000000 + n, UINT64_MAX - n);
        assert_non_null(tok);
        assert_true(strncmp(tok, "tgk1.", 5) == 0);
        assert_true(strlen(tok) <= FLEET_TOKEN_MAX);
        assert_int_equal(open_tok(&s, aad, tok, strlen(tok), &got, &rot, &gen), TG_OK);
        assert_memory_equal(&got, &set, sizeof(set));
        assert_int_equal(rot, 1700000000 + n);
        assert_true(gen == UINT64_MAX - n);
        /* a fresh nonce each time: the same set seals differently */
        char *again = fleet_tickets_seal(&s, aad, &set, 1700000000 + n, UINT64_MAX - n);
        assert_non_null(again);
        assert_string_not_equal(tok, again);
        /* twin: with the terminating NUL counted, a byte trails */
        assert_refused(&s, aad, tok, strlen(tok) + 1, "base64");
        free(again);
        free(tok);
    }
    /* enc is carried as it is, not assumed to be 0 */
    set_of(&set, 3, 1, 9);
    char *tok = fleet_tickets_seal(&s, aad, &set, 0, 0);
    assert_non_null(tok);
    assert_int_equal(open_tok(&s, aad, tok, strlen(tok), &got, &rot, &gen), TG_OK);
    assert_int_equal(got.enc, 1);
    assert_int_equal(got.n, 3);
    free(tok);
    fleet_secret_wipe(&s);
    fleet_secret_wipe(NULL);
}

static void test_other_secret(void **state)
{
    (void)state;
    struct fleet_secret s, other;
    struct ticket_set set, got;
    uint64_t rot, gen;
    secret_of(&s, 1);
    secret_of(&other, 2);
    set_of(&set, 2, 0, 1);
    char *tok = fleet_tickets_seal(&s, aad, &set, 5, 6);
    assert_non_null(tok);
    assert_int_equal(open_tok(&s, aad, tok, strlen(tok), &got, &rot, &gen), TG_OK);
    assert_refused(&other, aad, tok, strlen(tok), "do not open");
    free(tok);
}

static void test_other_aad(void **state)
{
    (void)state;
    static const char *const others[] = {
        "/tollgate/other/tickets",
        "/tollgate/fleet/ticket",
        "/tollgate/fleet/tickets/",
        "",
    };
    struct fleet_secret s;
    struct ticket_set set, got;
    uint64_t rot, gen;
    secret_of(&s, 1);
    set_of(&set, 1, 0, 1);
    char *tok = fleet_tickets_seal(&s, aad, &set, 5, 6);
    assert_non_null(tok);
    assert_int_equal(open_tok(&s, aad, tok, strlen(tok), &got, &rot, &gen), TG_OK);
    for (size_t i = 0; i < TG_ARRAY_LEN(others); i++)
        assert_refused(&s, others[i], tok, strlen(tok), "do not open");
    free(tok);
    /* an empty aad works too, and only with itself */
    tok = fleet_tickets_seal(&s, "", &set, 5, 6);
    assert_non_null(tok);
    assert_int_equal(open_tok(&s, "", tok, strlen(tok), &got, &rot, &gen), TG_OK);
    assert_refused(&s, aad, tok, strlen(tok), "do not open");
    free(tok);
}

static void test_every_byte_flip(void **state)
{
    (void)state;
    struct fleet_secret s;
    struct ticket_set set, got;
    uint64_t rot, gen;
    secret_of(&s, 1);
    /* One key: its ciphertext ends in "==", so the flips reach the bits a
     * padded base64 group leaves over. */
    set_of(&set, 1, 0, 1);
    char *tok = fleet_tickets_seal(&s, aad, &set, 5, 6);
    assert_non_null(tok);
    size_t len = strlen(tok);
    assert_true(tok[len - 1] == '=' && tok[len - 2] == '=');
    size_t at_tag = 0;
    for (size_t i = 0; i < len; i++) {
        for (unsigned x = 1; x < 256; x++) {
            tok[i] = (char)(tok[i] ^ x);
            assert_refused(&s, aad, tok, len, NULL);
            at_tag += strstr(err, "do not open") != NULL;
            tok[i] = (char)(tok[i] ^ x);
        }
    }
    /* Most flips leave the alphabet or break the framing; the others reach
     * the tag: any of 63 other characters at the 16 nonce characters (no
     * padding) and at the first 165 of the 166 ciphertext characters; at
     * the last, only the 3 others that leave its 4 spare bits zero; and at
     * the first '=', the 16 characters whose 2 spare bits are zero. */
    assert_int_equal(at_tag, 63 * (16 + 165) + 3 + 16);
    assert_int_equal(open_tok(&s, aad, tok, len, &got, &rot, &gen), TG_OK);
    free(tok);
}

static void test_truncated(void **state)
{
    (void)state;
    struct fleet_secret s;
    struct ticket_set set, got;
    uint64_t rot, gen;
    secret_of(&s, 1);
    set_of(&set, 3, 0, 1);
    char *tok = fleet_tickets_seal(&s, aad, &set, 5, 6);
    assert_non_null(tok);
    size_t len = strlen(tok);
    for (size_t cut = 0; cut < len; cut++)
        assert_refused(&s, aad, tok, cut, NULL);
    assert_refused(&s, aad, tok, 4, "prefix");
    assert_refused(&s, aad, tok, 21, "no '.'");
    assert_int_equal(open_tok(&s, aad, tok, len, &got, &rot, &gen), TG_OK);
    /* cut by whole base64 groups: still base64, but the tag does not match */
    assert_refused(&s, aad, tok, len - 4, "do not open");
    free(tok);
}

/* A deterministic generator, for garbage that repeats from run to run. */
static uint32_t next_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

static void test_garbage(void **state)
{
    (void)state;
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    struct fleet_secret s;
    char *buf = malloc(FLEET_TOKEN_MAX + 2);
    uint32_t x = 2463534242u;
    assert_non_null(buf);
    secret_of(&s, 1);
    for (size_t len = 0; len <= FLEET_TOKEN_MAX + 1; len++) {
        for (size_t i = 0; i < len; i++)
            buf[i] = (char)next_rand(&x);
        assert_refused(&s, aad, buf, len, NULL);
        /* the prefix, a well-formed nonce, then base64 of any length */
        for (size_t i = 0; i < len; i++)
            buf[i] = alphabet[next_rand(&x) % 64];
        memcpy(buf, "tgk1.", len < 5 ? len : 5);
        if (len > 21)
            buf[21] = '.';
        assert_refused(&s, aad, buf, len, NULL);
    }
    memset(buf, 'A', FLEET_TOKEN_MAX + 1);
    assert_refused(&s, aad, buf, FLEET_TOKEN_MAX + 1, "more than 4096");
    free(buf);
}

/* ---- the plaintext, sealed by the test's own AES-GCM ---- */

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* A plaintext with the given header fields and keys keys (named apart). */
static size_t plain(uint8_t *out, uint32_t version, uint32_t n, uint32_t enc, size_t keys)
{
    put_be(out, version, 4);
    put_be(out + 4, 1700000000, 8);
    put_be(out + 12, 42, 8);
    put_be(out + 20, n, 4);
    put_be(out + 24, enc, 4);
    for (size_t i = 0; i < keys; i++)
        memset(out + FLEET_TICKETS_HDR + i * TICKET_KEY_LEN, (int)(i + 1), TICKET_KEY_LEN);
    return FLEET_TICKETS_HDR + keys * TICKET_KEY_LEN;
}

/* "tgk1." base64(nonce) "." base64(AES-256-GCM(pt) | tag): a heap string. */
static char *raw_token(const struct fleet_secret *s, const char *a, const uint8_t *pt, size_t len,
                       size_t nonce_len)
{
    uint8_t nonce[16], ct[2048];
    int n = 0;
    assert_true(len + 16 <= sizeof(ct) && nonce_len <= sizeof(nonce));
    memset(nonce, 0x11, sizeof(nonce));
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, (int)nonce_len, NULL), 1);
    assert_int_equal(EVP_EncryptInit_ex(ctx, NULL, NULL, s->key, nonce), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &n, (const uint8_t *)a, (int)strlen(a)), 1);
    if (len > 0)
        assert_int_equal(EVP_EncryptUpdate(ctx, ct, &n, pt, (int)len), 1);
    assert_int_equal(EVP_EncryptFinal_ex(ctx, ct + len, &n), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, ct + len), 1);
    EVP_CIPHER_CTX_free(ctx);
    char *tok = malloc(8192);
    assert_non_null(tok);
    size_t at = (size_t)snprintf(tok, 8192, "tgk1.");
    at += (size_t)EVP_EncodeBlock((uint8_t *)tok + at, nonce, (int)nonce_len);
    tok[at++] = '.';
    at += (size_t)EVP_EncodeBlock((uint8_t *)tok + at, ct, (int)(len + 16));
    tok[at] = '\0';
    return tok;
}

/* Seals pt with the test's AES-GCM and opens it: TG_OK, or refused with a
 * reason holding why; fleet_tickets_decode says the same of pt alone. */
static void check_plain(const uint8_t *pt, size_t len, const char *why)
{
    struct fleet_secret s;
    struct ticket_set set;
    uint64_t rot, gen;
    secret_of(&s, 3);
    char *tok = raw_token(&s, aad, pt, len, 12);
    if (why == NULL) {
        assert_int_equal(open_tok(&s, aad, tok, strlen(tok), &set, &rot, &gen), TG_OK);
        assert_int_equal(rot, 1700000000);
        assert_int_equal(gen, 42);
        uint8_t again[FLEET_TICKETS_MAX];
        assert_int_equal(fleet_tickets_encode(&set, rot, gen, again), len);
        assert_memory_equal(again, pt, len);
    } else {
        assert_refused(&s, aad, tok, strlen(tok), why);
    }
    free(tok);
    memset(&set, 0xa5, sizeof(set));
    rot = gen = 77;
    err[0] = '\0';
    enum tg_status st = fleet_tickets_decode(pt, len, &set, &rot, &gen, err, sizeof(err));
    if (why == NULL) {
        assert_int_equal(st, TG_OK);
    } else {
        assert_int_equal(st, TG_E_PROTO);
        assert_wiped(&set, rot, gen);
        assert_non_null(strstr(err, why));
    }
}

static void test_plaintext_fields(void **state)
{
    (void)state;
    uint8_t pt[FLEET_TICKETS_MAX + 2 * TICKET_KEY_LEN];
    check_plain(pt, plain(pt, 1, 1, 0, 1), NULL);
    check_plain(pt, plain(pt, 2, 1, 0, 1), "version 2");
    check_plain(pt, plain(pt, 0, 1, 0, 1), "version 0");
    check_plain(pt, plain(pt, 1, 8, 7, 8), NULL);
    check_plain(pt, plain(pt, 1, 0, 0, 0), "holds 0 keys");
    check_plain(pt, plain(pt, 1, 0, 0, 1), "holds 0 keys");
    check_plain(pt, plain(pt, 1, 9, 0, 1), "holds 9 keys");
    check_plain(pt, plain(pt, 1, UINT32_MAX, 0, 1), "holds 4294967295 keys");
    check_plain(pt, plain(pt, 1, 3, 2, 3), NULL);
    check_plain(pt, plain(pt, 1, 3, 3, 3), "key 3 of 3");
    check_plain(pt, plain(pt, 1, 3, UINT32_MAX, 3), "key 4294967295 of 3");
    /* the keys n announces, no more, no fewer */
    check_plain(pt, plain(pt, 1, 3, 0, 2), "truncated");
    check_plain(pt, plain(pt, 1, 3, 0, 4), "trailing bytes");
    check_plain(pt, plain(pt, 1, 3, 0, 3) + 1, "trailing bytes");
    check_plain(pt, plain(pt, 1, 3, 0, 3) - 1, "truncated");
    check_plain(pt, FLEET_TICKETS_HDR - 1, "header");
    check_plain(pt, 0, "header");
    /* two keys of one name */
    size_t len = plain(pt, 1, 3, 0, 3);
    memcpy(pt + FLEET_TICKETS_HDR + 2 * TICKET_KEY_LEN, pt + FLEET_TICKETS_HDR, TICKET_NAME_LEN);
    check_plain(pt, len, "same name");
    pt[FLEET_TICKETS_HDR + 2 * TICKET_KEY_LEN + TICKET_NAME_LEN - 1] ^= 1;
    check_plain(pt, len, NULL);
    /* nine whole keys do not fit a token's ciphertext, and do not decode */
    struct fleet_secret s;
    struct ticket_set set;
    uint64_t rot, gen;
    secret_of(&s, 3);
    len = plain(pt, 1, 9, 0, 9);
    char *tok = raw_token(&s, aad, pt, len, 12);
    assert_refused(&s, aad, tok, strlen(tok), "ciphertext is not 16 to 684 bytes");
    free(tok);
    err[0] = '\0';
    assert_int_equal(fleet_tickets_decode(pt, len, &set, &rot, &gen, err, sizeof(err)), TG_E_PROTO);
    assert_wiped(&set, rot, gen);
    assert_non_null(strstr(err, "holds 9 keys"));
}

static void test_seal_refuses_unsound_sets(void **state)
{
    (void)state;
    struct fleet_secret s;
    struct ticket_set set;
    uint8_t pt[FLEET_TICKETS_MAX];
    secret_of(&s, 1);
    set_of(&set, 0, 0, 1);
    assert_null(fleet_tickets_seal(&s, aad, &set, 1, 1));
    assert_int_equal(fleet_tickets_encode(&set, 1, 1, pt), 0);
    set_of(&set, TICKET_KEYS_MAX + 1, 0, 1);
    assert_null(fleet_tickets_seal(&s, aad, &set, 1, 1));
    set_of(&set, 2, 2, 1);
    assert_null(fleet_tickets_seal(&s, aad, &set, 1, 1));
    set_of(&set, 2, 0, 1);
    memcpy(set.v[1].bytes, set.v[0].bytes, TICKET_NAME_LEN);
    assert_null(fleet_tickets_seal(&s, aad, &set, 1, 1));
    set.v[1].bytes[0] ^= 1; /* twin: names apart, it seals */
    char *tok = fleet_tickets_seal(&s, aad, &set, 1, 1);
    assert_non_null(tok);
    free(tok);
}

static void test_nonce_and_tag_sizes(void **state)
{
    (void)state;
    struct fleet_secret s;
    uint8_t pt[FLEET_TICKETS_MAX];
    size_t len = plain(pt, 1, 1, 0, 1);
    secret_of(&s, 3);
    /* GCM takes other nonce sizes; the token does not */
    char *tok = raw_token(&s, aad, pt, len, 8);
    assert_refused(&s, aad, tok, strlen(tok), "nonce is not 12 bytes");
    free(tok);
    tok = raw_token(&s, aad, pt, len, 16);
    assert_refused(&s, aad, tok, strlen(tok), "nonce is not 12 bytes");
    free(tok);
    /* a tag and no ciphertext: it opens (no OpenSSL failure), to nothing */
    tok = raw_token(&s, aad, pt, 0, 12);
    assert_refused(&s, aad, tok, strlen(tok), "0 bytes, shorter than their header");
    free(tok);
    /* less than a tag */
    assert_refused(&s, aad, "tgk1.ERERERERERERERER.AAAA", 25, "ciphertext");
    /* the canonical twin of a valid token's padding: only zero bits left over */
    uint8_t *out = NULL;
    size_t out_len = 0;
    assert_true(fleet_b64_decode("AA==", 4, 8, &out, &out_len));
    free(out);
    assert_false(fleet_b64_decode("AB==", 4, 8, &out, &out_len));
    assert_true(fleet_b64_decode("AAA=", 4, 8, &out, &out_len));
    free(out);
    assert_false(fleet_b64_decode("AAB=", 4, 8, &out, &out_len));
    assert_null(out);
}

/* ---- fixed values: a change here parts a node from its fleet ---- */

/* From a separate HKDF-SHA256 and AES-GCM: the derivation of "0123456789
 * abcdef0123456789abcdef", and a token sealed with it, nonce 00..0b, aad
 * "/tollgate/fleet/tickets", rotated_at 1700000000, generation 42, keys
 * 00..4f and 80..cf, enc 1. */
static const uint8_t kat_key[32] = {
    0x85, 0x40, 0x7f, 0x17, 0xa0, 0xcd, 0x34, 0x8e, 0x7b, 0x8d, 0x16, 0x19, 0xdd, 0x01, 0x6c, 0xe0,
    0xdc, 0xb5, 0xf0, 0x24, 0x8a, 0xeb, 0x2c, 0x0b, 0xf1, 0xdd, 0x4f, 0x6d, 0xf8, 0x38, 0xe7, 0x1f,
};
static const char kat_token[] =
    "tgk1.AAECAwQFBgcICQoL.QwA/WxFLIxHr31n3P/8hlepCSla9cfYSKqzrkff0s3LhDJsiGsdy0Ux9ncBTEkjNIM5pnGyK"
    "1a0IyWbBAAGBqd1/eKIm/2SPx5yz788UczzKTiVh4V8TAa45/h/2tNxy93snKdvCzIblUIv7N9aBgVzWdvMUwZHOI7EY"
    "5aNI+jsD9ZV9PNXNt9DeAFsSmpcaKkgF9PNIU36QkS/Q5LmDHEldKdnwbs428+AXjI2TlsE37btrpciGHmWGtwhkd5WQ"
    "q84DbzJzTFRSpf7Y";

static void test_known_answer(void **state)
{
    (void)state;
    static const char ikm[] = "0123456789abcdef0123456789abcdef";
    struct fleet_secret s;
    struct ticket_set set;
    uint64_t rot, gen;
    assert_int_equal(fleet_secret_derive((const uint8_t *)ikm, sizeof(ikm) - 1, &s), TG_OK);
    assert_memory_equal(s.key, kat_key, sizeof(kat_key));
    assert_int_equal(open_tok(&s, aad, kat_token, sizeof(kat_token) - 1, &set, &rot, &gen), TG_OK);
    assert_int_equal(rot, 1700000000);
    assert_int_equal(gen, 42);
    assert_int_equal(set.n, 2);
    assert_int_equal(set.enc, 1);
    for (size_t i = 0; i < TICKET_KEY_LEN; i++) {
        assert_int_equal(set.v[0].bytes[i], i);
        assert_int_equal(set.v[1].bytes[i], 0x80 + i);
    }
    /* twin: the last character of the ikm changed */
    static const char ikm2[] = "0123456789abcdef0123456789abcdeF";
    assert_int_equal(fleet_secret_derive((const uint8_t *)ikm2, sizeof(ikm2) - 1, &s), TG_OK);
    assert_memory_not_equal(s.key, kat_key, sizeof(kat_key));
    assert_refused(&s, aad, kat_token, sizeof(kat_token) - 1, "do not open");
}

/* ---- the secret file ---- */

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    return unit_rm_tree(dir);
}

/* Writes len bytes to dir/name with mode; returns the path (static). */
static const char *write_secret(const char *name, const void *data, size_t len, mode_t mode)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
    return path;
}

static enum tg_status load(const char *path, struct fleet_secret *s)
{
    memset(s, 0xa5, sizeof(*s));
    err[0] = '\0';
    return fleet_secret_load(path, s, err, sizeof(err));
}

static void assert_load_refused(const char *path, const char *why)
{
    static const struct fleet_secret zero;
    struct fleet_secret s;
    assert_int_equal(load(path, &s), TG_E_CONFIG);
    assert_memory_equal(&s, &zero, sizeof(zero));
    if (strstr(err, why) == NULL)
        fail_msg("error \"%s\" does not say \"%s\"", err, why);
    assert_non_null(strstr(err, path));
    assert_null(strstr(err, "SECRET")); /* no secret byte in a message */
}

/* Loads the len bytes as a secret file; the key must be that of the first
 * want bytes. */
static void assert_loads_as(const char *data, size_t len, size_t want)
{
    struct fleet_secret s, direct;
    const char *path = write_secret("s", data, len, 0600);
    assert_int_equal(load(path, &s), TG_OK);
    assert_int_equal(fleet_secret_derive((const uint8_t *)data, want, &direct), TG_OK);
    assert_memory_equal(s.key, direct.key, sizeof(direct.key));
}

static void test_secret_size(void **state)
{
    (void)state;
    char *big = malloc(FLEET_SECRET_MAX + 2);
    assert_non_null(big);
    memset(big, 'S', FLEET_SECRET_MAX + 2);
    memcpy(big, "SECRET", 6);
    assert_loads_as(big, FLEET_SECRET_MIN, FLEET_SECRET_MIN);
    assert_load_refused(write_secret("s", big, FLEET_SECRET_MIN - 1, 0600), "holds 31 bytes");
    /* the newline does not count toward the minimum */
    big[FLEET_SECRET_MIN - 1] = '\n';
    assert_load_refused(write_secret("s", big, FLEET_SECRET_MIN, 0600), "holds 31 bytes");
    assert_load_refused(write_secret("s", big, 0, 0600), "holds 0 bytes");
    assert_load_refused(write_secret("s", "\n", 1, 0600), "holds 0 bytes");
    big[FLEET_SECRET_MIN - 1] = 'S';
    assert_loads_as(big, FLEET_SECRET_MAX, FLEET_SECRET_MAX);
    assert_load_refused(write_secret("s", big, FLEET_SECRET_MAX + 1, 0600), "larger than 4096");
    /* the newline counts toward the maximum: the file is bounded, not the secret */
    big[FLEET_SECRET_MAX] = '\n';
    assert_load_refused(write_secret("s", big, FLEET_SECRET_MAX + 1, 0600), "larger than 4096");
    big[FLEET_SECRET_MAX - 1] = '\n';
    assert_loads_as(big, FLEET_SECRET_MAX, FLEET_SECRET_MAX - 1);
    free(big);
}

static void test_secret_newline(void **state)
{
    (void)state;
    static const char text[] = "SECRET-0123456789abcdef0123456789abcdef\n\n";
    struct fleet_secret bare, nl, two, cr;
    size_t len = sizeof(text) - 3;
    assert_int_equal(load(write_secret("s", text, len, 0600), &bare), TG_OK);
    assert_int_equal(load(write_secret("s", text, len + 1, 0600), &nl), TG_OK);
    assert_memory_equal(bare.key, nl.key, sizeof(nl.key));
    /* twins: only one newline is dropped, and only a newline */
    assert_int_equal(load(write_secret("s", text, len + 2, 0600), &two), TG_OK);
    assert_memory_not_equal(bare.key, two.key, sizeof(two.key));
    assert_loads_as(text, len + 2, len + 1);
    char crlf[64];
    snprintf(crlf, sizeof(crlf), "%.*s\r\n", (int)len, text);
    assert_int_equal(load(write_secret("s", crlf, len + 2, 0600), &cr), TG_OK);
    assert_memory_not_equal(bare.key, cr.key, sizeof(cr.key));
}

static void test_secret_mode(void **state)
{
    (void)state;
    static const mode_t wide[] = {0640, 0620, 0604, 0602, 0660, 0644, 0666, 0610};
    static const char text[] = "SECRET-0123456789abcdef0123456789abcdef";
    struct fleet_secret s;
    for (size_t i = 0; i < TG_ARRAY_LEN(wide); i++)
        assert_load_refused(write_secret("s", text, sizeof(text) - 1, wide[i]), "chmod 600");
    assert_load_refused(write_secret("s", text, sizeof(text) - 1, 0640), "mode 640");
    assert_int_equal(load(write_secret("s", text, sizeof(text) - 1, 0600), &s), TG_OK);
    assert_int_equal(load(write_secret("s", text, sizeof(text) - 1, 0400), &s), TG_OK);
    assert_int_equal(load(write_secret("s", text, sizeof(text) - 1, 0700), &s), TG_OK);
}

static void test_secret_not_a_file(void **state)
{
    (void)state;
    char path[256];
    struct fleet_secret s;
    snprintf(path, sizeof(path), "%s/missing", dir);
    assert_load_refused(path, "cannot read");
    assert_load_refused(dir, "not a regular file");
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_load_refused(path, "not a regular file");
    /* a link to a good file is followed, and the file's mode counts */
    static const char text[] = "SECRET-0123456789abcdef0123456789abcdef";
    const char *target = write_secret("s", text, sizeof(text) - 1, 0600);
    snprintf(path, sizeof(path), "%s/link", dir);
    assert_int_equal(symlink(target, path), 0);
    assert_int_equal(load(path, &s), TG_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_other_secret),
        cmocka_unit_test(test_other_aad),
        cmocka_unit_test(test_every_byte_flip),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_plaintext_fields),
        cmocka_unit_test(test_seal_refuses_unsound_sets),
        cmocka_unit_test(test_nonce_and_tag_sizes),
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_secret_size),
        cmocka_unit_test(test_secret_newline),
        cmocka_unit_test(test_secret_mode),
        cmocka_unit_test(test_secret_not_a_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
