#ifndef TG_CORE_B64_H
#define TG_CORE_B64_H

/* The value (0 to 63) of a character of standard base64 (RFC 4648 §4), or
 * -1 for any other, padding included. */
static inline int tg_b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

#endif
