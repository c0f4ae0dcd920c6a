#include "core/b64.h"
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
        if (tg_b64_value(s[i]) < 0)
            return false;
    /* The bits a padded group leaves over must be zero (RFC 4648 §3.5), so
     * that one byte string has one encoding: EVP_DecodeBlock drops them, and
     * a changed bit there would otherwise pass unseen. */
    if (pad > 0 && (tg_b64_value(s[len - pad - 1]) & (pad == 1 ? 0x3 : 0xf)) != 0)
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
