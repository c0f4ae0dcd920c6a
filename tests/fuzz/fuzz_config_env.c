/*
 * Fuzzes ${NAME} and ${NAME:-default} in config values (cfg_expand_env)
 * against a second, plain reading of the rules in config/internal.h
 * (model_expand below), under a few variables set here: both give the same
 * status and the same bytes. An input without "${" is left alone (NULL),
 * a result is at most CFG_ENV_VALUE_MAX bytes and NUL-terminated, and a
 * refusal gives a reason. The input is then loaded as a whole config, so
 * that the loader's use of the expansion (every scalar but single-quoted
 * ones, errors at the value's line:col) runs on it too.
 *
 * clang -fsanitize=fuzzer -DTG_LIBFUZZER builds a fuzzer; otherwise main()
 * replays every file in the directory given as argv[1].
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#include "config/config.h"
#include "config/internal.h"

#ifdef TG_LIBFUZZER
const char *__lsan_default_suppressions(void);

/* As in fuzz_config.c: libfyaml 0.7.12 leaks on runs of '' escapes in a
 * single-quoted scalar (pantoniou/libfyaml#337). Only while fuzzing. */
const char *__lsan_default_suppressions(void)
{
    return "leak:libfyaml.so\n";
}
#endif

static void fz_env(void)
{
    static bool is_set;
    if (is_set)
        return;
    static char long_value[CFG_ENV_VALUE_MAX - 8 + 1];
    memset(long_value, 'L', sizeof(long_value) - 1);
    CHECK(setenv("TG_FZ_A", "alpha", 1) == 0);
    CHECK(setenv("TG_FZ_EMPTY", "", 1) == 0);
    CHECK(setenv("TG_FZ_REF", "${TG_FZ_A}", 1) == 0);
    CHECK(setenv("TG_FZ_PATH", "/nonexistent/tollgate-fuzz/x.pem", 1) == 0);
    CHECK(setenv("TG_FZ_LONG", long_value, 1) == 0);
    CHECK(unsetenv("TG_FZ_UNSET") == 0);
    is_set = true;
}

static bool name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool name_rest(char c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

/* out gets up to CFG_ENV_VALUE_MAX bytes; false once more would go in. */
static bool emit(char *out, size_t *n, const char *s, size_t len)
{
    if (*n + len > CFG_ENV_VALUE_MAX)
        return false;
    memcpy(out + *n, s, len);
    *n += len;
    return true;
}

/* 0: nothing to expand; 1: expanded into out[0..*n); -1: refused. */
static int model_expand(const char *s, size_t len, char *out, size_t *n)
{
    *n = 0;
    bool has_ref = false;
    for (size_t i = 0; i + 1 < len; i++)
        has_ref = has_ref || (s[i] == '$' && s[i + 1] == '{');
    if (!has_ref)
        return 0;
    size_t i = 0;
    while (i < len) {
        if (i + 2 < len && s[i] == '$' && s[i + 1] == '$' && s[i + 2] == '{') {
            if (!emit(out, n, "${", 2))
                return -1;
            i += 3;
            continue;
        }
        if (!(i + 1 < len && s[i] == '$' && s[i + 1] == '{')) {
            if (!emit(out, n, s + i, 1))
                return -1;
            i++;
            continue;
        }
        size_t p = i + 2;
        if (p >= len || !name_start(s[p]))
            return -1;
        while (p < len && name_rest(s[p]))
            p++;
        size_t name_len = p - (i + 2);
        if (name_len > CFG_ENV_NAME_MAX)
            return -1;
        const char *dflt = NULL;
        size_t dflt_len = 0, end;
        if (p < len && s[p] == '}') {
            end = p;
        } else if (p + 1 < len && s[p] == ':' && s[p + 1] == '-') {
            const char *close = memchr(s + p + 2, '}', len - p - 2);
            if (close == NULL)
                return -1;
            dflt = s + p + 2;
            dflt_len = (size_t)(close - dflt);
            end = (size_t)(close - s);
        } else {
            return -1;
        }
        char name[CFG_ENV_NAME_MAX + 1];
        memcpy(name, s + i + 2, name_len);
        name[name_len] = '\0';
        const char *v = getenv(name);
        bool use_value = v != NULL && (v[0] != '\0' || dflt == NULL);
        if (use_value ? !emit(out, n, v, strlen(v)) : dflt == NULL || !emit(out, n, dflt, dflt_len))
            return -1;
        i = end + 1;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char want[CFG_ENV_VALUE_MAX];
    fz_env();
    const char *s = (const char *)data;
    char *out = (char *)data;
    size_t out_len = 77, want_len = 0;
    char err[256] = "";
    enum tg_status st = cfg_expand_env(s, size, &out, &out_len, err, sizeof(err));
    int m = model_expand(s, size, want, &want_len);
    if (m < 0) {
        CHECK(st == TG_E_CONFIG);
        CHECK(out == NULL && out_len == 0);
        CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
    } else if (m == 0) {
        CHECK(st == TG_OK && out == NULL && out_len == 0);
    } else {
        CHECK(st == TG_OK && out != NULL);
        CHECK(out_len == want_len && out_len <= CFG_ENV_VALUE_MAX);
        CHECK(memcmp(out, want, out_len) == 0);
        CHECK(out[out_len] == '\0');
    }
    free(out);

    /* The loader on the same bytes: nothing but statuses to look at. */
    struct diag d;
    struct config *cfg = NULL;
    diag_init(&d);
    if (config_load_buffer("fuzz.yaml", "/nonexistent/tollgate-fuzz", s, size, &cfg, &d) == TG_OK)
        config_free(cfg);
    char line[2048];
    for (size_t i = 0; i < d.n; i++)
        diag_format(&d, i, line, sizeof(line));
    diag_fini(&d);
    return 0;
}
