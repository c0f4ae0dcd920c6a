/* The status page (GET / and /ui): one HTML page, built into the binary
 * from src/admin/ui.html, that reads /status and /metrics with fetch. */
#include "admin/internal.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

/* Appends " 'sha256-BASE64'" of the text between the first open tag and
 * the next close tag of page; false when the page has no such element or
 * out does not have room. */
static bool element_hash(const char *page, size_t len, const char *open, const char *close,
                         char *out, size_t cap)
{
    const char *end = page + len;
    const char *s = memmem(page, len, open, strlen(open));
    if (s == NULL)
        return false;
    s += strlen(open);
    const char *e = memmem(s, (size_t)(end - s), close, strlen(close));
    if (e == NULL)
        return false;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(s, (size_t)(e - s), md, &md_len, EVP_sha256(), NULL) != 1)
        return false;
    unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    EVP_EncodeBlock(b64, md, (int)md_len);
    size_t used = strlen(out);
    int n = snprintf(out + used, cap - used, " 'sha256-%s'", (const char *)b64);
    return n > 0 && (size_t)n < cap - used;
}

bool admin_ui_csp_for(const char *page, size_t len, char *out, size_t cap)
{
    int n = snprintf(out, cap, "default-src 'none'; connect-src 'self'; script-src");
    if (n < 0 || (size_t)n >= cap)
        return false;
    if (!element_hash(page, len, "<script>", "</script>", out, cap))
        return false;
    size_t used = strlen(out);
    n = snprintf(out + used, cap - used, "; style-src");
    if (n < 0 || (size_t)n >= cap - used)
        return false;
    if (!element_hash(page, len, "<style>", "</style>", out, cap))
        return false;
    used = strlen(out);
    n = snprintf(out + used, cap - used,
                 "; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                 "frame-ancestors 'none'");
    return n > 0 && (size_t)n < cap - used;
}

const char *admin_ui_headers(void)
{
    static char headers[512];
    static bool is_done;
    if (!is_done) {
        char csp[400];
        if (!admin_ui_csp_for((const char *)admin_ui_page, admin_ui_page_len, csp, sizeof(csp)))
            snprintf(csp, sizeof(csp), "default-src 'none'");
        snprintf(headers, sizeof(headers),
                 "Content-Security-Policy: %s\r\nReferrer-Policy: no-referrer\r\n", csp);
        is_done = true;
    }
    return headers;
}
