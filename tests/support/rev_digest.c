/* A fleet revision document's digest, computed from its JSON apart from
 * src/fleet/rev.c, for the tests and the fuzzer. */
#include "rev_digest.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/*
 * The digest of a document's contents, computed here from its JSON: the
 * config path with a NUL, the config text, then for each file "\n", its
 * path with a NUL, its digest, a NUL, its size in decimal, a NUL and '1'
 * when sealed ('0' otherwise), then for each local path "\nlocal:" and the
 * path with a NUL.
 * False when a field it covers has the wrong type or a file digest is not
 * 64 characters (the decoder refuses those before it looks at the digest).
 */
bool rev_digest_json(const json_t *j, char hex[65])
{
    const json_t *config = json_object_get(j, "config");
    const json_t *config_path = json_object_get(j, "config_path");
    const json_t *files = json_object_get(j, "files");
    const json_t *local = json_object_get(j, "local");
    if (!json_is_string(config) || !json_is_string(config_path) || !json_is_array(files) ||
        !json_is_array(local))
        return false;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c == NULL)
        return false;
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, json_string_value(config_path), strlen(json_string_value(config_path)) + 1);
    EVP_DigestUpdate(c, json_string_value(config), json_string_length(config));
    bool ok = true;
    for (size_t i = 0; ok && i < json_array_size(files); i++) {
        const json_t *f = json_array_get(files, i);
        const json_t *path = json_object_get(f, "path");
        const char *sha = json_string_value(json_object_get(f, "sha256"));
        const json_t *size = json_object_get(f, "size");
        const json_t *sealed = json_object_get(f, "sealed");
        ok = json_is_string(path) && sha != NULL && strlen(sha) == 64 && json_is_integer(size) &&
             json_integer_value(size) >= 0 && (sealed == NULL || json_is_boolean(sealed));
        if (ok) {
            /* "\0" SIZE "\0" SEALED, SEALED 0 or 1 */
            char tail[48];
            tail[0] = '\0';
            int n_tail = 1 + snprintf(tail + 1, sizeof(tail) - 1, "%llu",
                                      (unsigned long long)json_integer_value(size));
            tail[n_tail++] = '\0';
            tail[n_tail++] = json_is_true(sealed) ? '1' : '0';
            EVP_DigestUpdate(c, "\n", 1);
            EVP_DigestUpdate(c, json_string_value(path), json_string_length(path) + 1);
            EVP_DigestUpdate(c, sha, 64);
            EVP_DigestUpdate(c, tail, (size_t)n_tail);
        }
    }
    for (size_t i = 0; ok && i < json_array_size(local); i++) {
        const json_t *v = json_array_get(local, i);
        ok = json_is_string(v);
        if (ok) {
            EVP_DigestUpdate(c, "\nlocal:", 7);
            EVP_DigestUpdate(c, json_string_value(v), json_string_length(v) + 1);
        }
    }
    uint8_t md[32];
    unsigned n = 0;
    EVP_DigestFinal_ex(c, md, &n);
    EVP_MD_CTX_free(c);
    for (size_t i = 0; i < 32; i++) {
        static const char digits[] = "0123456789abcdef";
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0xf];
    }
    hex[64] = '\0';
    return ok;
}
