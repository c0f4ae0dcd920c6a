/*
 * Fuzz target for the config loader: any bytes through config_load_buffer.
 * Built with -fsanitize=fuzzer and -DTG_LIBFUZZER it fuzzes; otherwise the
 * replay main() runs every file of the corpus directory given as argv[1].
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifdef TG_LIBFUZZER
const char *__lsan_default_suppressions(void);

/* libfyaml 0.7.12 leaks the atom iterator's chunk array when it builds the
 * text of a single-quoted scalar with five or more '' escapes in a row
 * (upstream pantoniou/libfyaml#337, fixed after 0.7.12). Only while fuzzing:
 * the replay build stays strict about every other leak. */
const char *__lsan_default_suppressions(void)
{
    return "leak:libfyaml.so\n";
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct diag d;
    struct config *cfg = NULL;
    diag_init(&d);
    /* A base directory that does not exist: relative file paths in the input
     * fail the readability check instead of touching real files. */
    if (config_load_buffer("fuzz.yaml", "/nonexistent/tollgate-fuzz", (const char *)data, size,
                           &cfg, &d) == TG_OK)
        config_free(cfg);
    /* Formatting exercises every stored entry. */
    char line[2048];
    for (size_t i = 0; i < d.n; i++)
        diag_format(&d, i, line, sizeof(line));
    diag_fini(&d);
    return 0;
}

#ifndef TG_LIBFUZZER
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        if (r == 0)
            break;
        len += r;
    }
    fclose(f);
    (void)LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
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
    int n = 0, failed = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", argv[1], e->d_name);
        if (replay_file(path) != 0)
            failed++;
        n++;
    }
    closedir(dir);
    printf("replayed %d inputs, %d unreadable\n", n, failed);
    return failed == 0 && n > 0 ? 0 : 1;
}
#endif
