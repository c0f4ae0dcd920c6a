/*
 * Shared by the HTTP head fuzz targets: CHECK, a well-formedness check for
 * a head we write, and the replay main() that gcc builds use to run a
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

/* Header lines of a head we wrote (after its first line) named name,
 * case-insensitively. */
static inline int fz_count_named(const char *out, size_t len, const char *name)
{
    int n = 0;
    size_t nlen = strlen(name);
    const char *p = memchr(out, '\r', len), *end = out + len;
    CHECK(p != NULL);
    p += 2;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        CHECK(eol != NULL);
        if ((size_t)(eol - p) > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0)
            n++;
        p = eol + 2;
    }
    return n;
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
