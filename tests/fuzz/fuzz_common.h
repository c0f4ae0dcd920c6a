/*
 * Shared by the HTTP head fuzz targets: CHECK, a well-formedness check for
 * a head we write, the identity-header property of a rewritten request,
 * and the replay main() that gcc builds use to run a
 * corpus directory as a regression test (clang -DTG_LIBFUZZER builds use
 * libFuzzer's main instead). Included by exactly one .c per binary.
 */
#ifndef TG_FUZZ_COMMON_H
#define TG_FUZZ_COMMON_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum { FZ_MAX_INPUT = 1 << 20 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A well-formed head: CRLF-terminated lines, no bare CR or LF, a colon in
 * every header line, and the only empty line at the end. */
static inline void fz_check_head(const char *out, size_t len)
{
    CHECK(len >= 4);
    CHECK(memcmp(out + len - 4, "\r\n\r\n", 4) == 0);
    for (size_t i = 0; i < len; i++) {
        if (out[i] == '\r')
            CHECK(i + 1 < len && out[i + 1] == '\n');
        if (out[i] == '\n')
            CHECK(i > 0 && out[i - 1] == '\r');
    }
    const char *p = out, *end = out + len - 2;
    bool first = true;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        CHECK(eol != NULL && eol > p);
        CHECK(first || memchr(p, ':', (size_t)(eol - p)) != NULL);
        first = false;
        p = eol + 2;
    }
    CHECK(p == end);
}

/* The header lines of a head we wrote, one by one after its first line:
 * *line gets the next line and *line_len its length (without CRLF). Start
 * with *pos = NULL; false when there is none left. */
static inline bool fz_next_line(const char *out, size_t len, const char **pos, const char **line,
                                size_t *line_len)
{
    const char *end = out + len;
    if (*pos == NULL) {
        *pos = memchr(out, '\r', len);
        CHECK(*pos != NULL);
        *pos += 2;
    }
    if (*pos >= end)
        return false;
    const char *eol = memchr(*pos, '\r', (size_t)(end - *pos));
    CHECK(eol != NULL);
    *line = *pos;
    *line_len = (size_t)(eol - *pos);
    *pos = eol + 2;
    return true;
}

/* Header lines of a head we wrote named name, case-insensitively. */
static inline int fz_count_named(const char *out, size_t len, const char *name)
{
    int n = 0;
    size_t nlen = strlen(name), ll;
    const char *pos = NULL, *l;
    while (fz_next_line(out, len, &pos, &l, &ll))
        n += ll > nlen && l[nlen] == ':' && strncasecmp(l, name, nlen) == 0;
    return n;
}

/* Header lines of a head we wrote whose name, lower-cased with '_' read as
 * '-' (as a CGI-style backend folds it), is lit (lower case), or starts
 * with lit when is_prefix. */
static inline int fz_count_folded(const char *out, size_t len, const char *lit, bool is_prefix)
{
    int n = 0;
    size_t nlen = strlen(lit), ll;
    const char *pos = NULL, *l;
    while (fz_next_line(out, len, &pos, &l, &ll)) {
        const char *colon = memchr(l, ':', ll);
        size_t name_len = colon != NULL ? (size_t)(colon - l) : 0;
        bool same = is_prefix ? name_len >= nlen : name_len == nlen;
        for (size_t i = 0; same && i < nlen; i++) {
            char c = l[i] == '_' ? '-' : l[i];
            same = (c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c) == lit[i];
        }
        n += same;
    }
    return n;
}

/* Header lines of a head we wrote with '_' in the name. */
static inline int fz_count_underscore_names(const char *out, size_t len)
{
    int n = 0;
    size_t ll;
    const char *pos = NULL, *l;
    while (fz_next_line(out, len, &pos, &l, &ll)) {
        const char *colon = memchr(l, ':', ll);
        n += colon != NULL && memchr(l, '_', (size_t)(colon - l)) != NULL;
    }
    return n;
}

/* The value of the first header line named name (exactly, any case) of a
 * head we wrote, and its length; NULL when there is none. */
static inline const char *fz_header_value(const char *out, size_t len, const char *name,
                                          size_t *vlen)
{
    size_t nlen = strlen(name), ll;
    const char *pos = NULL, *l;
    while (fz_next_line(out, len, &pos, &l, &ll)) {
        if (ll >= nlen + 2 && l[nlen] == ':' && l[nlen + 1] == ' ' &&
            strncasecmp(l, name, nlen) == 0) {
            *vlen = ll - nlen - 2;
            return l + nlen + 2;
        }
    }
    return NULL;
}

/*
 * The identity property of a rewritten request: exactly one of each header
 * we set and none of the client's, counted in every spelling ('_' as '-',
 * any case); no name with '_' unless allowed; X-Forwarded-For is our
 * address alone, or (from a trusted proxy) ends with it; Forwarded only
 * when we add it, with our address.
 */
static inline void fz_check_identity(const char *out, size_t len, const char *ip, bool has_tls,
                                     bool has_cert, bool has_cert_der, bool has_chain,
                                     bool allow_underscores, bool trusted, bool forwarded)
{
    CHECK(fz_count_folded(out, len, "x-real-ip", false) == 1);
    CHECK(fz_count_folded(out, len, "x-forwarded-for", false) == 1);
    CHECK(fz_count_folded(out, len, "x-forwarded-proto", false) == 1);
    CHECK(fz_count_folded(out, len, "x-forwarded-port", false) == 1);
    CHECK(fz_count_folded(out, len, "x-forwarded-", true) == 3);
    CHECK(fz_count_folded(out, len, "x-forwarded-host", false) == 0);
    CHECK(fz_count_folded(out, len, "x-forwarded-client-cert", false) == 0);
    CHECK(fz_count_folded(out, len, "forwarded", false) == (forwarded ? 1 : 0));
    CHECK(fz_count_folded(out, len, "x-client-verify", false) == (has_tls ? 1 : 0));
    CHECK(fz_count_folded(out, len, "x-client-", true) == (has_tls ? 1 + (has_cert ? 4 : 0) : 0));
    CHECK(fz_count_folded(out, len, "client-cert", false) == (has_tls && has_cert_der ? 1 : 0));
    CHECK(fz_count_folded(out, len, "client-cert-chain", false) ==
          (has_tls && has_cert && has_chain ? 1 : 0));
    CHECK(fz_count_folded(out, len, "content-length", false) ==
          fz_count_named(out, len, "content-length"));
    CHECK(fz_count_folded(out, len, "transfer-encoding", false) ==
          fz_count_named(out, len, "transfer-encoding"));
    if (!allow_underscores)
        CHECK(fz_count_underscore_names(out, len) == 0);
    size_t vlen = 0, iplen = strlen(ip);
    const char *v = fz_header_value(out, len, "x-forwarded-for", &vlen);
    CHECK(v != NULL && vlen >= iplen && memcmp(v + vlen - iplen, ip, iplen) == 0);
    if (!trusted)
        CHECK(vlen == iplen);
    else
        CHECK(vlen == iplen || (vlen > iplen + 2 && memcmp(v + vlen - iplen - 2, ", ", 2) == 0));
    if (forwarded) {
        char want[96];
        bool is_v6 = strchr(ip, ':') != NULL;
        snprintf(want, sizeof(want), "for=%s%s%s;proto=", is_v6 ? "\"[" : "", ip,
                 is_v6 ? "]\"" : "");
        v = fz_header_value(out, len, "forwarded", &vlen);
        CHECK(v != NULL && vlen > strlen(want) && memcmp(v, want, strlen(want)) == 0);
    }
}

#ifndef TG_LIBFUZZER
static int fz_replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    uint8_t *data = malloc(FZ_MAX_INPUT);
    CHECK(data != NULL);
    size_t n = fread(data, 1, FZ_MAX_INPUT, f);
    int rc = ferror(f) ? -1 : 0;
    fclose(f);
    if (rc == 0)
        LLVMFuzzerTestOneInput(data, n);
    else
        fprintf(stderr, "%s: read error\n", path);
    free(data);
    return rc;
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
    int files = 0;
    int failed = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        char path[4096];
        struct stat st;
        int n = snprintf(path, sizeof(path), "%s/%s", argv[1], e->d_name);
        if (n < 0 || (size_t)n >= sizeof(path) || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (fz_replay_file(path) != 0)
            failed++;
        files++;
    }
    closedir(dir);
    printf("replayed %d files from %s\n", files, argv[1]);
    /* An empty corpus would pass without testing anything. */
    return files == 0 || failed > 0 ? 1 : 0;
}
#endif

#endif
