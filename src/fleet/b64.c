#include "fleet/b64.h"

#include <openssl/evp.h>
#include <stdlib.h>

char *fleet_b64_encode(const uint8_t *data, size_t len)
{
    if (len > (size_t)INT32_MAX / 2)
        return NULL;
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out == NULL)
        return NULL;
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    out[n] = '\0';
    return out;
}

static bool is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

bool fleet_b64_decode(const char *s, size_t len, size_t max, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (len % 4 != 0 || len / 4 * 3 > max + 2 || len > (size_t)INT32_MAX / 2)
        return false;
    size_t pad = 0;
    if (len > 0 && s[len - 1] == '=')
        pad = len > 1 && s[len - 2] == '=' ? 2 : 1;
    /* EVP_DecodeBlock skips spaces and accepts '=' anywhere: be strict. */
    for (size_t i = 0; i < len - pad; i++)
        if (!is_b64(s[i]))
            return false;
    size_t n = len / 4 * 3 - pad;
    if (n > max)
        return false;
    uint8_t *buf = malloc(len / 4 * 3 + 1);
    if (buf == NULL)
        return false;
    if (len > 0 && EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len) < 0) {
        free(buf);
        return false;
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return true;
}
