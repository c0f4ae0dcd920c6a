/*
 * Allow-lists: checking the patterns a verified client certificate is
 * matched against (tls/allow.c matches them) and reading allow files.
 *
 * An allow file is UTF-8 text, one matcher a line: "FIELD VALUE", where
 * FIELD is one of config_allow_field_name's names and VALUE is the rest of
 * the line with its surrounding blanks (spaces, tabs) removed. Blank lines
 * and lines whose first non-blank character is '#' are ignored; a line may
 * end in CRLF, and the file may start with a UTF-8 byte order mark. Every
 * bad line is reported at the line and column of the field or value that
 * is wrong, up to ALLOW_FILE_MAX_ERRORS of them.
 */
#include "config/config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/log.h"
#include "core/b64.h"
#include "core/suggest.h"

/* The longest text pattern, in bytes. */
#define ALLOW_TEXT_MAX 1024
/* Errors reported for one allow file before the rest is left unread: a
 * binary file would otherwise give one per line. */
#define ALLOW_FILE_MAX_ERRORS 100

static const char *const field_names[CFG_ALLOW_N_FIELDS] = {
    [CFG_ALLOW_SUBJECT_CN] = "subject_cn",   [CFG_ALLOW_SAN_DNS] = "san_dns",
    [CFG_ALLOW_SAN_URI] = "san_uri",         [CFG_ALLOW_SAN_EMAIL] = "san_email",
    [CFG_ALLOW_SAN_IP] = "san_ip",           [CFG_ALLOW_FINGERPRINT_SHA256] = "fingerprint_sha256",
    [CFG_ALLOW_SPKI_SHA256] = "spki_sha256", [CFG_ALLOW_ISSUER] = "issuer",
    [CFG_ALLOW_SERIAL] = "serial",
};

#define FIELD_LIST                                                                                 \
    "subject_cn, san_dns, san_uri, san_email, san_ip, fingerprint_sha256, spki_sha256, issuer, "   \
    "serial"

const char *config_allow_field_name(enum cfg_allow_field f)
{
    return (unsigned)f < CFG_ALLOW_N_FIELDS ? field_names[f] : "?";
}

int config_allow_field_of(const char *name)
{
    for (int f = 0; f < CFG_ALLOW_N_FIELDS; f++)
        if (strcmp(field_names[f], name) == 0)
            return f;
    return -1;
}

/* Length of the character at s[0, n) when it is printable: ASCII from
 * 0x20 to 0x7e, or well-formed UTF-8 other than the C1 controls
 * (U+0080-U+009F, 0xc2 0x80-0x9f). 0 otherwise. */
static size_t printable_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return s[0] >= 0x20 && s[0] != 0x7f ? 1 : 0;
    size_t k = log_utf8_len(s, n);
    if (k == 2 && s[0] == 0xc2 && s[1] < 0xa0)
        return 0;
    return k;
}

static bool is_printable(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0, k; i < n; i += k)
        if ((k = printable_len(p + i, n - i)) == 0)
            return false;
    return true;
}

/* Letters, digits, '-' and '*' in labels separated by single dots. */
static const char *dns_pattern_problem(const char *s, size_t n)
{
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0)
                break;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '*') {
            label++;
        } else {
            return "a DNS name pattern takes letters, digits, '-', '.' and '*' only "
                   "(e.g. *.example.com)";
        }
    }
    if (label == 0)
        return "a DNS name pattern has an empty label: no leading, trailing or doubled '.' "
               "(e.g. *.example.com)";
    return NULL;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Hex digits, either bare or as pairs separated by single ':' ("0a:1b"),
 * into out (big-endian; an odd number of bare digits reads as if a '0'
 * came first; out holds (max_digits + 1) / 2 bytes). At most max_digits
 * digits. *n_digits and *n_bytes get what was read. False when s has
 * another shape.
 */
static bool parse_hex(const char *s, size_t max_digits, uint8_t *out, size_t *n_digits,
                      size_t *n_bytes)
{
    size_t n = strlen(s), digits = 0;
    bool has_colons = memchr(s, ':', n) != NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ':') {
            /* Only between two pairs. */
            if (i % 3 != 2 || i + 1 == n)
                return false;
        } else if (hex_value(s[i]) < 0 || (has_colons && i % 3 == 2)) {
            return false;
        } else {
            digits++;
        }
    }
    if (digits == 0 || digits > max_digits)
        return false;
    if (has_colons && n % 3 != 2)
        return false;
    size_t bytes = (digits + 1) / 2, d = digits % 2; /* d: nibbles already in out[0] */
    memset(out, 0, bytes);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ':')
            continue;
        out[d / 2] = (uint8_t)(out[d / 2] << 4 | hex_value(s[i]));
        d++;
    }
    *n_digits = digits;
    *n_bytes = bytes;
    return true;
}

/* The standard base64 (RFC 4648 §4) of exactly 32 bytes: 43 characters
 * and one '=', the bits past the 256th zero (canonical). */
static bool parse_b64_32(const char *s, uint8_t out[32])
{
    if (strlen(s) != 44 || s[43] != '=')
        return false;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < 43; i++) {
        int v = tg_b64_value(s[i]);
        if (v < 0)
            return false;
        acc = (acc << 6 | (uint32_t)v) & 0x3fff; /* at most 14 bits pending */
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o == 32 && bits == 2 && (acc & 3) == 0;
}

bool config_allow_term_set(struct cfg_allow_term *t, enum cfg_allow_field f, const char *value,
                           const char **why)
{
    struct cfg_allow_term n = {.field = f, .pos = t->pos};
    size_t len = strlen(value), digits = 0;
    switch (f) {
    case CFG_ALLOW_SUBJECT_CN:
    case CFG_ALLOW_SAN_DNS:
    case CFG_ALLOW_SAN_URI:
    case CFG_ALLOW_SAN_EMAIL:
    case CFG_ALLOW_ISSUER:
        if (len == 0 || len > ALLOW_TEXT_MAX) {
            *why = "a pattern is 1-1024 bytes of text";
            return false;
        }
        if (!is_printable(value, len)) {
            *why = "a pattern is printable UTF-8 text: no control characters";
            return false;
        }
        if (f == CFG_ALLOW_SAN_DNS && (*why = dns_pattern_problem(value, len)) != NULL)
            return false;
        if (f == CFG_ALLOW_SAN_URI && (value[0] == ':' || strchr(value, ':') == NULL)) {
            *why = "a URI pattern starts with its scheme and ':' (e.g. spiffe://example.org/*)";
            return false;
        }
        if (f == CFG_ALLOW_SAN_EMAIL && strchr(value, '@') == NULL) {
            *why = "an email pattern holds '@' (e.g. *@example.com)";
            return false;
        }
        break;
    case CFG_ALLOW_SAN_IP:
        if (!config_cidr_parse(value, &n.net, why))
            return false;
        break;
    case CFG_ALLOW_FINGERPRINT_SHA256:
        if (!parse_hex(value, 64, n.bytes, &digits, &n.n_bytes) || digits != 64) {
            *why = "a SHA-256 fingerprint is 64 hex digits, bare or as pairs separated by ':'";
            return false;
        }
        break;
    case CFG_ALLOW_SPKI_SHA256:
        if (parse_b64_32(value, n.bytes)) {
            n.n_bytes = 32;
        } else if (!parse_hex(value, 64, n.bytes, &digits, &n.n_bytes) || digits != 64) {
            *why = "a SHA-256 SPKI hash is 64 hex digits (bare or as pairs separated by ':') "
                   "or 44 characters of base64 ending in '='";
            return false;
        }
        break;
    case CFG_ALLOW_SERIAL: {
        uint8_t raw[20];
        size_t n_raw = 0, zeros = 0;
        if (!parse_hex(value, 2 * sizeof(raw), raw, &digits, &n_raw)) {
            *why = "a serial number is 1-40 hex digits, bare or as pairs separated by ':'";
            return false;
        }
        /* The magnitude as ASN1_INTEGER keeps it: no leading zero octets,
         * zero itself one 0x00. */
        while (zeros + 1 < n_raw && raw[zeros] == 0)
            zeros++;
        n.n_bytes = n_raw - zeros;
        memcpy(n.bytes, raw + zeros, n.n_bytes);
        break;
    }
    default:
        *why = "not an allow-list field (one of " FIELD_LIST ")";
        return false;
    }
    n.value = strdup(value);
    if (n.value == NULL) {
        *why = "out of memory";
        return false;
    }
    *t = n;
    return true;
}

void config_allow_rule_fini(struct cfg_allow_rule *r)
{
    for (size_t k = 0; k < r->n_terms; k++)
        free(r->terms[k].value);
    free(r->terms);
    memset(r, 0, sizeof(*r));
}

void config_allow_fini(struct cfg_allow *a)
{
    for (size_t i = 0; i < a->n_rules; i++)
        config_allow_rule_fini(&a->rules[i]);
    free(a->rules);
    a->rules = NULL;
    a->n_rules = 0;
}

/* Reading one allow file. */
struct allow_reader {
    const char *path;
    struct diag *d;
    size_t n_errors; /* reported for this file */
    bool is_oom;
    struct cfg_allow list;
    size_t cap;
};

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The 1-based column (in characters) of byte i of a line of UTF-8. */
static int col_of(const char *line, size_t i)
{
    int col = 1;
    for (size_t k = 0; k < i; k++)
        col += ((unsigned char)line[k] & 0xc0) != 0x80;
    return col;
}

static void reader_error(struct allow_reader *r, int line, int col, const char *key,
                         const char *fmt, ...) TG_PRINTF(5, 6);

static void reader_error(struct allow_reader *r, int line, int col, const char *key,
                         const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->n_errors++;
    diag_add(r->d, DIAG_ERROR, r->path, line, col, key, "%s", msg);
}

/* A line is text without NUL bytes or control characters but tabs. False
 * (reported) when it is not. */
static bool check_text(struct allow_reader *r, const char *s, size_t n, int line)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0, k; i < n; i += k) {
        if (p[i] == '\t') {
            k = 1;
            continue;
        }
        if ((k = printable_len(p + i, n - i)) > 0)
            continue;
        if (p[i] == 0)
            reader_error(r, line, col_of(s, i), NULL,
                         "a NUL byte: an allow file is text, one \"FIELD VALUE\" a line");
        else if (p[i] >= 0x80 && log_utf8_len(p + i, n - i) == 0)
            reader_error(r, line, col_of(s, i), NULL,
                         "not UTF-8: an allow file is UTF-8 text, one \"FIELD VALUE\" a line");
        else
            reader_error(r, line, col_of(s, i), NULL,
                         "a control character: only printable text, spaces and tabs are "
                         "accepted (lines end in LF or CRLF)");
        return false;
    }
    return true;
}

static void add_rule(struct allow_reader *r, const struct cfg_allow_term *t)
{
    struct cfg_allow *a = &r->list;
    struct cfg_allow_term *terms = malloc(sizeof(*terms));
    if (terms != NULL && a->n_rules == r->cap) {
        size_t cap = r->cap != 0 ? 2 * r->cap : 16;
        struct cfg_allow_rule *rules = realloc(a->rules, cap * sizeof(*rules));
        if (rules != NULL) {
            a->rules = rules;
            r->cap = cap;
        }
    }
    if (terms == NULL || a->n_rules == r->cap) {
        free(terms);
        free(t->value);
        r->is_oom = true;
        return;
    }
    terms[0] = *t;
    a->rules[a->n_rules++] = (struct cfg_allow_rule){.terms = terms, .n_terms = 1, .pos = t->pos};
}

void config_allow_unknown_field(const char *field, size_t n, char *dst, size_t dst_len)
{
    char word[SUGGEST_MAX_LEN + 1];
    const char *near = NULL;
    if (n < sizeof(word)) {
        memcpy(word, field, n);
        word[n] = '\0';
        near = suggest_closest(word, field_names, CFG_ALLOW_N_FIELDS);
    }
    if (near != NULL)
        snprintf(dst, dst_len, "unknown field \"%.*s\"; did you mean \"%s\"? (fields: %s)", (int)n,
                 field, near, FIELD_LIST);
    else
        snprintf(dst, dst_len, "unknown field \"%.*s\" (fields: %s)", (int)(n < 64 ? n : 64), field,
                 FIELD_LIST);
}

static void unknown_field(struct allow_reader *r, int line, int col, const char *field, size_t n)
{
    char msg[512];
    config_allow_unknown_field(field, n, msg, sizeof(msg));
    reader_error(r, line, col, NULL, "%s", msg);
}

/* One line, its end of line removed. */
static void read_line(struct allow_reader *r, const char *s, size_t n, int line)
{
    if (!check_text(r, s, n, line))
        return;
    size_t i = 0;
    while (i < n && is_blank(s[i]))
        i++;
    if (i == n || s[i] == '#')
        return;
    size_t field_at = i;
    while (i < n && !is_blank(s[i]))
        i++;
    size_t field_len = i - field_at;
    int f = -1;
    for (int k = 0; k < CFG_ALLOW_N_FIELDS && f < 0; k++)
        if (strlen(field_names[k]) == field_len &&
            memcmp(field_names[k], s + field_at, field_len) == 0)
            f = k;
    if (f < 0) {
        unknown_field(r, line, col_of(s, field_at), s + field_at, field_len);
        return;
    }
    const char *name = field_names[f];
    while (i < n && is_blank(s[i]))
        i++;
    size_t end = n;
    while (end > i && is_blank(s[end - 1]))
        end--;
    if (i == end) {
        reader_error(r, line, col_of(s, field_at), name,
                     "a value is needed after the field: %s VALUE", name);
        return;
    }
    char *value = strndup(s + i, end - i);
    if (value == NULL) {
        r->is_oom = true;
        return;
    }
    struct cfg_allow_term t = {.pos = {.line = line, .col = col_of(s, field_at)}};
    const char *why = NULL;
    if (config_allow_term_set(&t, (enum cfg_allow_field)f, value, &why))
        add_rule(r, &t);
    else
        reader_error(r, line, col_of(s, i), name, "%s", why);
    free(value);
}

enum tg_status config_allow_file_load(const char *path, struct cfg_allow *out, struct diag *d)
{
    struct allow_reader r = {.path = path, .d = d};
    char *text = NULL, err[256];
    size_t len = 0;
    if (tg_read_file(path, CFG_ALLOW_FILE_MAX, &text, &len, err, sizeof(err)) != TG_OK) {
        diag_add(d, DIAG_ERROR, NULL, 0, 0, NULL, "cannot read allow file \"%s\": %s", path, err);
        return TG_E_CONFIG;
    }
    int line = 0;
    size_t at = 0;
    /* A UTF-8 byte order mark, as some editors write, is not text. */
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        at = 3;
    while (at < len && !r.is_oom) {
        const char *s = text + at;
        const char *nl = memchr(s, '\n', len - at);
        size_t n = nl != NULL ? (size_t)(nl - s) : len - at;
        at += n + (nl != NULL);
        line++;
        if (n > 0 && s[n - 1] == '\r')
            n--;
        read_line(&r, s, n, line);
        if (r.n_errors >= ALLOW_FILE_MAX_ERRORS && at < len) {
            diag_add(d, DIAG_ERROR, path, line, 0, NULL,
                     "too many errors; the rest of the file is not read");
            break;
        }
    }
    free(text);
    if (r.is_oom)
        diag_add(d, DIAG_ERROR, path, line, 0, NULL, "out of memory reading the allow file");
    if (r.n_errors > 0 || r.is_oom) {
        config_allow_fini(&r.list);
        return TG_E_CONFIG;
    }
    *out = r.list;
    return TG_OK;
}
