/* The fleet's pure parts and a node's cache (src/fleet/rev.c, store.c,
 * b64.c, cache.c), and ${NAME} in config values (src/config/env.c). A
 * revision is built in memory, digested and encoded, then taken apart
 * field by field; the cache runs in a temporary directory on files a
 * config names (no real certificates: the loader checks that they can be
 * read and parses only the allow file). */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "config/config.h"
#include "config/internal.h"
#include "fleet/b64.h"
#include "fleet/cache.h"
#include "fleet/fleet.h"
#include "fleet/internal.h"
#include "fleet/rev.h"
#include "rev_digest.h"
#include "unit_tmpdir.h"

static char dir[] = "/tmp/test_fleet.XXXXXX";
static char err[512];

/* ---- helpers ---- */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

/* A string of n copies of ch (heap). */
static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

/* A path under dir in one of 16 rotating buffers. */
static const char *path_of(const char *name)
{
    static char paths[16][512];
    static int next;
    char *p = paths[next++ % 16];
    snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
    return p;
}

static void write_path(const char *path, const void *data, size_t len, mode_t mode)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

/* The whole file (heap, NUL-terminated); NULL when it cannot be read. */
static char *read_path(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    return buf;
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    return unit_rm_tree(dir);
}

/* ---- revision documents ---- */

static const char sample_config[] = "# fleet sample\nlisteners: []\n";

static void add_file(struct fleet_rev *r, const char *path, const char *content, bool is_secret)
{
    struct fleet_file *f = &r->files[r->n_files++];
    f->path = xstrdup(path);
    fleet_sha256_hex(content, strlen(content), f->sha);
    f->size = strlen(content);
    f->is_secret = is_secret;
}

static void add_local(struct fleet_rev *r, const char *path)
{
    r->local[r->n_local++] = xstrdup(path);
}

/* A revision with room for cap files and cap local paths: three shipped
 * files (one sealed) and one local path, digested. */
static void sample_rev_cap(struct fleet_rev *r, size_t cap)
{
    memset(r, 0, sizeof(*r));
    r->rev = 7;
    r->parent = 6;
    r->at = 1700000000;
    r->by = xstrdup("ops@host");
    r->message = xstrdup("rotate the CRL");
    r->config_path = xstrdup("/etc/tollgate/tollgate.yaml");
    r->config_text = xstrdup(sample_config);
    r->config_len = strlen(sample_config);
    r->files = calloc(cap, sizeof(*r->files));
    r->local = calloc(cap, sizeof(*r->local));
    assert_non_null(r->files);
    assert_non_null(r->local);
    add_file(r, "/etc/tollgate/pki/server.crt", "certificate", false);
    add_file(r, "/etc/tollgate/pki/clients.crl", "crl", false);
    add_file(r, "/etc/tollgate/pki/ticket.key", "keys", true);
    add_local(r, "/etc/tollgate/pki/server.key");
    fleet_rev_digest(r);
}

static void sample_rev(struct fleet_rev *r)
{
    sample_rev_cap(r, 8);
}

static void assert_rev_equal(const struct fleet_rev *a, const struct fleet_rev *b)
{
    assert_int_equal(a->rev, b->rev);
    assert_int_equal(a->parent, b->parent);
    assert_int_equal(a->at, b->at);
    assert_string_equal(a->by, b->by);
    assert_string_equal(a->message, b->message);
    assert_string_equal(a->config_path, b->config_path);
    assert_int_equal(a->config_len, b->config_len);
    assert_memory_equal(a->config_text, b->config_text, a->config_len);
    assert_int_equal(a->n_files, b->n_files);
    for (size_t i = 0; i < a->n_files; i++) {
        assert_string_equal(a->files[i].path, b->files[i].path);
        assert_string_equal(a->files[i].sha, b->files[i].sha);
        assert_int_equal(a->files[i].size, b->files[i].size);
        assert_int_equal(a->files[i].is_secret, b->files[i].is_secret);
    }
    assert_int_equal(a->n_local, b->n_local);
    for (size_t i = 0; i < a->n_local; i++)
        assert_string_equal(a->local[i], b->local[i]);
    assert_string_equal(a->sha, b->sha);
}

static enum tg_status decode(const char *text, size_t len, struct fleet_rev *out)
{
    /* Filled, so that a refusal must leave it empty. */
    memset(out, 0xa5, sizeof(*out));
    err[0] = '\0';
    return fleet_rev_decode(text, len, out, err, sizeof(err));
}

static void assert_refused_text(const char *text, size_t len, const char *why)
{
    static const struct fleet_rev zero;
    struct fleet_rev out;
    assert_int_equal(decode(text, len, &out), TG_E_PROTO);
    assert_memory_equal(&out, &zero, sizeof(zero));
    if (strstr(err, why) == NULL)
        fail_msg("error \"%s\" does not say \"%s\"", err, why);
}

static void assert_accepted_text(const char *text, size_t len, struct fleet_rev *out)
{
    if (decode(text, len, out) != TG_OK)
        fail_msg("refused: %s", err);
}

/* r's document as a JSON tree, to be changed and given back. */
static json_t *doc_json(const struct fleet_rev *r)
{
    char *text = fleet_rev_encode(r);
    assert_non_null(text);
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(j);
    free(text);
    return j;
}

/* Dumps j (taking it) as a document and expects it refused with why. */
static void assert_refused_json(json_t *j, const char *why)
{
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(text);
    json_decref(j);
    assert_refused_text(text, strlen(text), why);
    free(text);
}

/* j with its digest made right again for what was changed in it. */
static void redigest(json_t *j)
{
    char hex[65];
    assert_true(rev_digest_json(j, hex));
    json_object_set_new(j, "sha256", json_string(hex));
}

/* The twin: j (taken) decodes. */
static void assert_accepted_json(json_t *j)
{
    struct fleet_rev out;
    redigest(j);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(text);
    json_decref(j);
    assert_accepted_text(text, strlen(text), &out);
    fleet_rev_free(&out);
    free(text);
}

/* r encoded after its digest, decoded: refused with why. */
static void assert_rev_refused(struct fleet_rev *r, const char *why)
{
    fleet_rev_digest(r);
    char *text = fleet_rev_encode(r);
    assert_non_null(text);
    assert_refused_text(text, strlen(text), why);
    free(text);
}

static void assert_rev_accepted(struct fleet_rev *r)
{
    struct fleet_rev out;
    fleet_rev_digest(r);
    char *text = fleet_rev_encode(r);
    assert_non_null(text);
    assert_accepted_text(text, strlen(text), &out);
    assert_rev_equal(&out, r);
    fleet_rev_free(&out);
    free(text);
}

static json_t *file_entry(json_t *j, size_t i)
{
    json_t *f = json_array_get(json_object_get(j, "files"), i);
    assert_non_null(f);
    return f;
}

static void test_rev_round_trip(void **state)
{
    (void)state;
    struct fleet_rev r, out, again;
    sample_rev(&r);
    char *text = fleet_rev_encode(&r);
    assert_non_null(text);
    assert_accepted_text(text, strlen(text), &out);
    assert_rev_equal(&out, &r);
    assert_true(out.files[2].is_secret);
    assert_false(out.files[0].is_secret);
    assert_int_equal(out.config_text[out.config_len], '\0');
    /* one encoding per revision: the decoded one encodes to the same text */
    char *text2 = fleet_rev_encode(&out);
    assert_non_null(text2);
    assert_string_equal(text, text2);
    assert_accepted_text(text2, strlen(text2), &again);
    fleet_rev_free(&again);
    /* twin: the same text with its last byte cut off */
    assert_refused_text(text, strlen(text) - 1, "not a revision document");
    /* an empty revision: no files, no local paths, empty texts */
    struct fleet_rev empty = {
        .rev = 1, .config_path = xstrdup("/t.yaml"), .config_text = xstrdup("")};
    empty.by = xstrdup("");
    empty.message = xstrdup("");
    empty.files = calloc(1, sizeof(*empty.files));
    empty.local = calloc(1, sizeof(*empty.local));
    assert_rev_accepted(&empty);
    fleet_rev_free(&empty);
    fleet_rev_free(&out);
    fleet_rev_free(&r);
    fleet_rev_free(NULL);
    free(text);
    free(text2);
}

static void test_rev_not_json(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "{", "[]", "null", "7", "\"rev\"", "{\"format\":1", "not json", "{} {}",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++)
        assert_refused_text(bad[i], strlen(bad[i]), "");
    assert_refused_text("[]", 2, "not a revision document");
    assert_refused_text("{}", 2, "unknown revision format");
    /* a document followed by a NUL is not a document */
    struct fleet_rev r;
    sample_rev(&r);
    char *text = fleet_rev_encode(&r);
    assert_refused_text(text, strlen(text) + 1, "not a revision document");
    /* twin: the same document with blanks around it */
    char *padded = malloc(strlen(text) + 8);
    assert_non_null(padded);
    snprintf(padded, strlen(text) + 8, " \n%s\n ", text);
    struct fleet_rev out;
    assert_accepted_text(padded, strlen(padded), &out);
    fleet_rev_free(&out);
    free(padded);
    free(text);
    fleet_rev_free(&r);
}

static void test_rev_duplicate_keys(void **state)
{
    (void)state;
    struct fleet_rev r, out;
    sample_rev(&r);
    char *text = fleet_rev_encode(&r);
    assert_true(text[0] == '{');
    size_t n = strlen(text) + 64;
    char *dup = malloc(n);
    assert_non_null(dup);
    /* the same value twice, at the top and in a file entry */
    snprintf(dup, n, "{\"rev\":7,%s", text + 1);
    assert_refused_text(dup, strlen(dup), "not a revision document");
    char *f = strstr(text, "{\"path\"");
    assert_non_null(f);
    snprintf(dup, n, "%.*s{\"size\":11,%s", (int)(f - text), text, f + 1);
    assert_refused_text(dup, strlen(dup), "not a revision document");
    /* twin: a key of its own is let through (a later format may add one) */
    snprintf(dup, n, "{\"zz\":7,%s", text + 1);
    assert_accepted_text(dup, strlen(dup), &out);
    fleet_rev_free(&out);
    free(dup);
    free(text);
    fleet_rev_free(&r);
}

static void test_rev_format_and_numbers(void **state)
{
    (void)state;
    struct fleet_rev r;
    sample_rev(&r);
    static const json_int_t formats[] = {0, 2, -1, 100};
    for (size_t i = 0; i < TG_ARRAY_LEN(formats); i++) {
        json_t *j = doc_json(&r);
        json_object_set_new(j, "format", json_integer(formats[i]));
        assert_refused_json(j, "unknown revision format");
    }
    /* rev 0 and negative numbers */
    static const char *const fields[] = {"rev", "parent", "at"};
    for (size_t i = 0; i < TG_ARRAY_LEN(fields); i++) {
        json_t *j = doc_json(&r);
        json_object_set_new(j, fields[i], json_integer(-1));
        assert_refused_json(j, "bad rev, parent or at");
        j = doc_json(&r);
        json_object_set_new(j, fields[i], json_integer(INT64_MIN));
        assert_refused_json(j, "bad rev, parent or at");
    }
    json_t *j = doc_json(&r);
    json_object_set_new(j, "rev", json_integer(0));
    assert_refused_json(j, "bad rev, parent or at");
    j = doc_json(&r);
    json_object_set_new(file_entry(j, 0), "size", json_integer(-1));
    assert_refused_json(j, "bad file 0");
    /* twins: rev 1, parent 0 and at 0 are the smallest taken; the largest
     * 64-bit numbers too */
    j = doc_json(&r);
    json_object_set_new(j, "rev", json_integer(1));
    json_object_set_new(j, "parent", json_integer(0));
    json_object_set_new(j, "at", json_integer(0));
    assert_accepted_json(j);
    j = doc_json(&r);
    json_object_set_new(j, "rev", json_integer(INT64_MAX));
    json_object_set_new(j, "at", json_integer(INT64_MAX));
    assert_accepted_json(j);
    /* one more than 64 bits hold does not parse */
    char *text = fleet_rev_encode(&r);
    char *at = strstr(text, "\"at\":1700000000");
    assert_non_null(at);
    size_t n = strlen(text) + 32;
    char *big = malloc(n);
    assert_non_null(big);
    snprintf(big, n, "%.*s\"at\":9223372036854775808%s", (int)(at - text), text, at + 15);
    assert_refused_text(big, strlen(big), "not a revision document");
    snprintf(big, n, "%.*s\"at\":9223372036854775807%s", (int)(at - text), text, at + 15);
    struct fleet_rev out;
    assert_accepted_text(big, strlen(big), &out);
    assert_true(out.at == INT64_MAX);
    fleet_rev_free(&out);
    free(big);
    free(text);
    fleet_rev_free(&r);
}

static void test_rev_missing_fields(void **state)
{
    (void)state;
    static const char *const top[] = {
        "format", "rev",         "parent", "at",    "by",    "message",
        "sha256", "config_path", "config", "files", "local",
    };
    static const char *const in_file[] = {"path", "sha256", "size"};
    struct fleet_rev r;
    sample_rev(&r);
    for (size_t i = 0; i < TG_ARRAY_LEN(top); i++) {
        json_t *j = doc_json(&r);
        assert_int_equal(json_object_del(j, top[i]), 0);
        assert_refused_json(j, "");
    }
    for (size_t i = 0; i < TG_ARRAY_LEN(in_file); i++) {
        json_t *j = doc_json(&r);
        assert_int_equal(json_object_del(file_entry(j, 1), in_file[i]), 0);
        assert_refused_json(j, "bad file 1");
    }
    /* twin: "sealed" may be left out (false) */
    json_t *j = doc_json(&r);
    assert_int_equal(json_object_del(file_entry(j, 2), "sealed"), 0);
    redigest(j);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    struct fleet_rev out;
    assert_accepted_text(text, strlen(text), &out);
    assert_false(out.files[2].is_secret);
    fleet_rev_free(&out);
    free(text);
    fleet_rev_free(&r);
}

static void test_rev_wrong_types(void **state)
{
    (void)state;
    struct fleet_rev r;
    sample_rev(&r);
    /* numbers as strings, reals, booleans */
    static const char *const numbers[] = {"format", "rev", "parent", "at"};
    for (size_t i = 0; i < TG_ARRAY_LEN(numbers); i++) {
        json_t *j = doc_json(&r);
        json_object_set_new(j, numbers[i], json_string("7"));
        assert_refused_json(j, "");
        j = doc_json(&r);
        json_object_set_new(j, numbers[i], json_real(7.0));
        assert_refused_json(j, "");
        j = doc_json(&r);
        json_object_set_new(j, numbers[i], json_true());
        assert_refused_json(j, "");
    }
    /* texts as numbers, null, arrays */
    static const char *const texts[] = {"by", "message", "config_path", "config", "sha256"};
    for (size_t i = 0; i < TG_ARRAY_LEN(texts); i++) {
        json_t *j = doc_json(&r);
        json_object_set_new(j, texts[i], json_integer(1));
        assert_refused_json(j, "");
        j = doc_json(&r);
        json_object_set_new(j, texts[i], json_null());
        assert_refused_json(j, "");
        j = doc_json(&r);
        json_object_set_new(j, texts[i], json_array());
        assert_refused_json(j, "");
    }
    /* the lists */
    json_t *j = doc_json(&r);
    json_object_set_new(j, "files", json_object());
    assert_refused_json(j, "bad files or local");
    j = doc_json(&r);
    json_object_set_new(j, "local", json_string("/etc/tollgate/pki/server.key"));
    assert_refused_json(j, "bad files or local");
    j = doc_json(&r);
    json_array_set_new(json_object_get(j, "local"), 0, json_integer(1));
    assert_refused_json(j, "bad local path 0");
    j = doc_json(&r);
    json_array_set_new(json_object_get(j, "files"), 1, json_string("/etc/tollgate/pki/x"));
    assert_refused_json(j, "bad file 1");
    /* a file entry's fields */
    j = doc_json(&r);
    json_object_set_new(file_entry(j, 0), "size", json_string("11"));
    assert_refused_json(j, "bad file 0");
    j = doc_json(&r);
    json_object_set_new(file_entry(j, 0), "size", json_real(11.0));
    assert_refused_json(j, "bad file 0");
    j = doc_json(&r);
    json_object_set_new(file_entry(j, 0), "path", json_integer(1));
    assert_refused_json(j, "bad file 0");
    j = doc_json(&r);
    json_object_set_new(file_entry(j, 0), "sha256", json_null());
    assert_refused_json(j, "bad file 0");
    /* "sealed" is a boolean */
    static json_t *(*const not_bool[])(void) = {json_null, json_object, json_array};
    for (size_t i = 0; i < TG_ARRAY_LEN(not_bool); i++) {
        j = doc_json(&r);
        json_object_set_new(file_entry(j, 2), "sealed", not_bool[i]());
        assert_refused_json(j, "bad file 2");
    }
    j = doc_json(&r);
    json_object_set_new(file_entry(j, 2), "sealed", json_string("true"));
    assert_refused_json(j, "bad file 2");
    j = doc_json(&r);
    json_object_set_new(file_entry(j, 2), "sealed", json_integer(1));
    assert_refused_json(j, "bad file 2");
    /* twins: false given, and true on another entry */
    j = doc_json(&r);
    json_object_set_new(file_entry(j, 2), "sealed", json_false());
    assert_accepted_json(j);
    j = doc_json(&r);
    json_object_set_new(file_entry(j, 0), "sealed", json_true());
    assert_accepted_json(j);
    fleet_rev_free(&r);
}

static void test_rev_text_bounds(void **state)
{
    (void)state;
    struct fleet_rev r;
    sample_rev(&r);
    char *max = repeat('m', FLEET_TEXT_MAX);
    char *over = repeat('m', FLEET_TEXT_MAX + 1);
    static const char *const fields[] = {"by", "message"};
    for (size_t i = 0; i < TG_ARRAY_LEN(fields); i++) {
        json_t *j = doc_json(&r);
        json_object_set_new(j, fields[i], json_string(max));
        assert_accepted_json(j);
        j = doc_json(&r);
        json_object_set_new(j, fields[i], json_string(over));
        assert_refused_json(j, "bad by or message");
    }
    /* FLEET_TEXT_MAX counts bytes: 256 two-byte characters fit, 257 do not */
    char utf8[2 * (FLEET_TEXT_MAX / 2 + 1) + 1];
    for (size_t i = 0; i < FLEET_TEXT_MAX / 2 + 1; i++)
        memcpy(utf8 + 2 * i, "\xc3\xa9", 2);
    utf8[FLEET_TEXT_MAX] = '\0';
    json_t *j = doc_json(&r);
    json_object_set_new(j, "message", json_string(utf8));
    assert_accepted_json(j);
    utf8[FLEET_TEXT_MAX] = '\xc3';
    utf8[FLEET_TEXT_MAX + 2] = '\0';
    j = doc_json(&r);
    json_object_set_new(j, "message", json_string(utf8));
    assert_refused_json(j, "bad by or message");
    /* a NUL in a text does not get through (jansson refuses \u0000) */
    j = doc_json(&r);
    json_object_set_new(j, "by", json_stringn("a\0b", 3));
    assert_refused_json(j, "");
    free(max);
    free(over);
    fleet_rev_free(&r);
}

/* Paths as config_path, as a file's path and as a local path: bad ones
 * refused, with the digest made over them (so the path check refuses). */
static void test_rev_paths(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "relative/t.yaml",
        "./t.yaml",
        "t.yaml",
        "/etc/../t.yaml",
        "/../t.yaml",
        "/etc/..",
        "/..",
        "/etc/tollgate/../",
        "/etc/tollgate/\x01t.yaml",
        "/etc/tollgate/t\n.yaml",
        "/etc/tollgate/t.yaml\x1f",
        "/etc/tollgate/\x7ft.yaml",
        "\t/etc/t.yaml",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        struct fleet_rev r;
        sample_rev(&r);
        free(r.config_path);
        r.config_path = xstrdup(bad[i]);
        assert_rev_refused(&r, "bad config or config_path");
        fleet_rev_free(&r);
        sample_rev(&r);
        free(r.files[1].path);
        r.files[1].path = xstrdup(bad[i]);
        assert_rev_refused(&r, "bad file 1");
        fleet_rev_free(&r);
        sample_rev(&r);
        free(r.local[0]);
        r.local[0] = xstrdup(bad[i]);
        assert_rev_refused(&r, "bad local path 0");
        fleet_rev_free(&r);
    }
    /* twins: dots that are not a ".." segment, spaces, UTF-8 */
    static const char *const fine[] = {
        "/t.yaml",
        "/etc/tollgate/..t.yaml",
        "/etc/tollgate/t..yaml",
        "/etc/tollgate/...",
        "/etc/./tollgate/t.yaml",
        "/etc/tollgate/\xc3\xa9.yaml",
        "/etc/tollgate dir/t.yaml",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(fine); i++) {
        struct fleet_rev r;
        sample_rev(&r);
        free(r.config_path);
        r.config_path = xstrdup(fine[i]);
        free(r.files[1].path);
        r.files[1].path = xstrdup(fine[i]);
        free(r.local[0]);
        char local[64];
        snprintf(local, sizeof(local), "%s.key", fine[i]);
        r.local[0] = xstrdup(local);
        assert_rev_accepted(&r);
        fleet_rev_free(&r);
    }
    /* a path of 4095 bytes is taken, 4096 not */
    struct fleet_rev r;
    sample_rev(&r);
    free(r.local[0]);
    r.local[0] = repeat('p', 4095);
    r.local[0][0] = '/';
    assert_rev_accepted(&r);
    free(r.local[0]);
    r.local[0] = repeat('p', 4096);
    r.local[0][0] = '/';
    assert_rev_refused(&r, "bad local path 0");
    fleet_rev_free(&r);
    /* a NUL in a path: refused by the JSON reader, the digest made over
     * the path as C sees it */
    sample_rev(&r);
    json_t *j = doc_json(&r);
    json_object_set_new(j, "config_path", json_stringn("/etc/t.yaml\0/x", 14));
    assert_refused_json(j, "not a revision document");
    j = doc_json(&r);
    json_object_set_new(file_entry(j, 0), "path",
                        json_stringn("/etc/tollgate/pki/server.crt\0", 29));
    assert_refused_json(j, "not a revision document");
    j = doc_json(&r);
    json_array_set_new(json_object_get(j, "local"), 0, json_stringn("/\0", 2));
    assert_refused_json(j, "not a revision document");
    fleet_rev_free(&r);
}

static void test_rev_file_sha(void **state)
{
    (void)state;
    struct fleet_rev r;
    sample_rev(&r);
    char good[65];
    memcpy(good, r.files[0].sha, sizeof(good));
    /* uppercase, 63 and 65 digits, not hexadecimal */
    static const char *const bad[] = {
        "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
        "abcdef0123456789abcdef0123456789abcdef0123456789abcdef012345678",
        "abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567890",
        "gbcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
        "abcdef0123456789abcdef0123456789abcdef0123456789abcdef012345678 ",
        "",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        json_t *j = doc_json(&r);
        json_object_set_new(file_entry(j, 0), "sha256", json_string(bad[i]));
        assert_refused_json(j, "bad file 0");
    }
    /* the document's own digest too */
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        json_t *j = doc_json(&r);
        json_object_set_new(j, "sha256", json_string(bad[i]));
        assert_refused_json(j, "bad sha256");
    }
    /* twin: the lowercase of the first, digested, is taken */
    memcpy(r.files[0].sha, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789", 65);
    assert_rev_accepted(&r);
    fleet_rev_free(&r);
}

static void test_rev_file_size(void **state)
{
    (void)state;
    struct fleet_rev r;
    sample_rev(&r);
    json_t *j = doc_json(&r);
    json_object_set_new(file_entry(j, 1), "size", json_integer(ETCD_VALUE_MAX));
    assert_accepted_json(j);
    j = doc_json(&r);
    json_object_set_new(file_entry(j, 1), "size", json_integer(ETCD_VALUE_MAX + 1));
    assert_refused_json(j, "bad file 1");
    j = doc_json(&r);
    json_object_set_new(file_entry(j, 1), "size", json_integer(INT64_MAX));
    assert_refused_json(j, "bad file 1");
    j = doc_json(&r);
    json_object_set_new(file_entry(j, 1), "size", json_integer(0));
    assert_accepted_json(j);
    fleet_rev_free(&r);
}

static void test_rev_same_path_twice(void **state)
{
    (void)state;
    struct fleet_rev r;
    sample_rev(&r);
    add_file(&r, "/etc/tollgate/pki/server.crt", "another certificate", false);
    assert_rev_refused(&r, "file 3 named twice");
    fleet_rev_free(&r);
    /* twin: the same contents under two paths */
    sample_rev(&r);
    add_file(&r, "/etc/tollgate/pki/server2.crt", "certificate", false);
    assert_string_equal(r.files[0].sha, r.files[3].sha);
    assert_rev_accepted(&r);
    fleet_rev_free(&r);
    /* a path both shipped and node-local, or local twice */
    sample_rev(&r);
    free(r.local[0]);
    r.local[0] = xstrdup(r.files[1].path);
    assert_rev_refused(&r, "local path 0 named twice");
    fleet_rev_free(&r);
    sample_rev(&r);
    add_local(&r, r.local[0]);
    assert_rev_refused(&r, "named twice");
    fleet_rev_free(&r);
}

static void test_rev_files_max(void **state)
{
    (void)state;
    struct fleet_rev r;
    char path[64];
    sample_rev_cap(&r, FLEET_FILES_MAX + 1);
    while (r.n_files < FLEET_FILES_MAX) {
        snprintf(path, sizeof(path), "/etc/tollgate/pki/f%zu.pem", r.n_files);
        add_file(&r, path, path, false);
    }
    while (r.n_local < FLEET_FILES_MAX) {
        snprintf(path, sizeof(path), "/etc/tollgate/pki/k%zu.key", r.n_local);
        add_local(&r, path);
    }
    assert_rev_accepted(&r);
    add_file(&r, "/etc/tollgate/pki/one-more.pem", "x", false);
    assert_rev_refused(&r, "bad files or local");
    free(r.files[--r.n_files].path);
    r.files[r.n_files].path = NULL;
    assert_rev_accepted(&r);
    add_local(&r, "/etc/tollgate/pki/one-more.key");
    assert_rev_refused(&r, "bad files or local");
    fleet_rev_free(&r);
}

/* The digest covers the config text, every file's path and digest and
 * every local path: one changed byte in any of them is seen. */
static void test_rev_digest_mismatch(void **state)
{
    (void)state;
    struct fleet_rev r;
    sample_rev(&r);
    json_t *j = doc_json(&r);
    json_object_set_new(j, "config", json_string("# fleet samplE\nlisteners: []\n"));
    assert_refused_json(j, "sha256 does not match the contents");
    j = doc_json(&r);
    json_object_set_new(j, "config", json_string("# fleet sample\nlisteners: []"));
    assert_refused_json(j, "sha256 does not match the contents");
    j = doc_json(&r);
    char sha[65];
    memcpy(sha, r.files[1].sha, sizeof(sha));
    sha[63] = sha[63] == '0' ? '1' : '0';
    json_object_set_new(file_entry(j, 1), "sha256", json_string(sha));
    assert_refused_json(j, "sha256 does not match the contents");
    j = doc_json(&r);
    json_object_set_new(file_entry(j, 0), "path", json_string("/etc/tollgate/pki/server.crT"));
    assert_refused_json(j, "sha256 does not match the contents");
    j = doc_json(&r);
    json_array_set_new(json_object_get(j, "local"), 0, json_string("/etc/tollgate/pki/server.keY"));
    assert_refused_json(j, "sha256 does not match the contents");
    /* the order of the files counts */
    j = doc_json(&r);
    json_t *files = json_object_get(j, "files");
    json_t *first = json_incref(json_array_get(files, 0));
    json_array_remove(files, 0);
    json_array_append_new(files, first);
    assert_refused_json(j, "sha256 does not match the contents");
    /* a file dropped, a local path added */
    j = doc_json(&r);
    json_array_remove(json_object_get(j, "files"), 2);
    assert_refused_json(j, "sha256 does not match the contents");
    j = doc_json(&r);
    json_array_append_new(json_object_get(j, "local"), json_string("/etc/tollgate/admin.token"));
    assert_refused_json(j, "sha256 does not match the contents");
    /* a digest of another revision */
    struct fleet_rev other;
    sample_rev(&other);
    other.config_text[0] = ';';
    fleet_rev_digest(&other);
    j = doc_json(&r);
    json_object_set_new(j, "sha256", json_string(other.sha));
    assert_refused_json(j, "sha256 does not match the contents");
    fleet_rev_free(&other);
    /* twins: what is not content (who, when, why, the numbers) does not
     * change the digest */
    j = doc_json(&r);
    json_object_set_new(j, "by", json_string("someone@else"));
    json_object_set_new(j, "message", json_string("another message"));
    json_object_set_new(j, "at", json_integer(1));
    json_object_set_new(j, "rev", json_integer(99));
    json_object_set_new(j, "parent", json_integer(98));
    assert_accepted_json(j);
    fleet_rev_free(&r);
}

static void test_rev_too_large(void **state)
{
    (void)state;
    struct fleet_rev r;
    sample_rev(&r);
    free(r.config_text);
    r.config_text = xstrdup("c"); /* nothing to escape */
    r.config_len = 1;
    char *text = fleet_rev_encode(&r);
    size_t overhead = strlen(text) - r.config_len;
    free(text);
    /* a config text that makes the document exactly FLEET_REV_MAX bytes */
    free(r.config_text);
    r.config_len = FLEET_REV_MAX - overhead;
    r.config_text = repeat('c', r.config_len);
    fleet_rev_digest(&r);
    text = fleet_rev_encode(&r);
    assert_int_equal(strlen(text), FLEET_REV_MAX);
    struct fleet_rev out;
    assert_accepted_text(text, strlen(text), &out);
    assert_int_equal(out.config_len, r.config_len);
    fleet_rev_free(&out);
    free(text);
    /* one byte more */
    free(r.config_text);
    r.config_len++;
    r.config_text = repeat('c', r.config_len);
    fleet_rev_digest(&r);
    text = fleet_rev_encode(&r);
    assert_int_equal(strlen(text), FLEET_REV_MAX + 1);
    assert_refused_text(text, strlen(text), "too large");
    /* and the same document padded with blanks past the limit */
    free(text);
    fleet_rev_free(&r);
    sample_rev(&r);
    text = fleet_rev_encode(&r);
    char *pad = repeat(' ', FLEET_REV_MAX + 1);
    memcpy(pad, text, strlen(text));
    assert_refused_text(pad, FLEET_REV_MAX + 1, "too large");
    assert_accepted_text(pad, FLEET_REV_MAX, &out);
    fleet_rev_free(&out);
    free(pad);
    free(text);
    fleet_rev_free(&r);
}

/* ---- the head ---- */

static const char hex_a[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static bool head_parse(const char *text, struct fleet_head *h)
{
    memset(h, 0, sizeof(*h));
    h->rev = -77;
    return fleet_head_parse((const uint8_t *)text, strlen(text), h);
}

static void test_head_parse(void **state)
{
    (void)state;
    struct fleet_head h;
    char text[512];
    snprintf(text, sizeof(text),
             "{\"rev\":42,\"sha256\":\"%s\",\"by\":\"ops@h\",\"at\":1700000000}", hex_a);
    assert_true(head_parse(text, &h));
    assert_int_equal(h.rev, 42);
    assert_string_equal(h.sha, hex_a);
    assert_string_equal(h.by, "ops@h");
    assert_int_equal(h.at, 1700000000);
    /* "by" may be missing */
    snprintf(text, sizeof(text), "{\"rev\":1,\"sha256\":\"%s\",\"at\":0}", hex_a);
    assert_true(head_parse(text, &h));
    assert_string_equal(h.by, "");
    /* a long "by" is cut to fit */
    char *by = repeat('b', 2 * FLEET_TEXT_MAX);
    char *long_text = malloc(4 * FLEET_TEXT_MAX);
    assert_non_null(long_text);
    snprintf(long_text, 4 * FLEET_TEXT_MAX, "{\"rev\":1,\"sha256\":\"%s\",\"at\":0,\"by\":\"%s\"}",
             hex_a, by);
    assert_true(head_parse(long_text, &h));
    assert_int_equal(strlen(h.by), FLEET_TEXT_MAX);
    free(long_text);
    free(by);

    /* twins */
#define HEX    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HEX_63 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"
    static const char *const bad_heads[] = {
        "{\"rev\":0,\"sha256\":\"" HEX "\",\"at\":1}",
        "{\"rev\":-1,\"sha256\":\"" HEX "\",\"at\":1}",
        "{\"rev\":\"42\",\"sha256\":\"" HEX "\",\"at\":1}",
        "{\"rev\":42.0,\"sha256\":\"" HEX "\",\"at\":1}",
        "{\"sha256\":\"" HEX "\",\"at\":1}",
        "{\"rev\":42,\"sha256\":\"" HEX "\"}",
        "{\"rev\":42,\"sha256\":\"" HEX "\",\"at\":\"1\"}",
        "{\"rev\":42,\"sha256\":\"" HEX "\",\"at\":null}",
        "{\"rev\":42,\"sha256\":\"" HEX "\",\"at\":1",
        "[{\"rev\":42,\"sha256\":\"" HEX "\",\"at\":1}]",
        "{\"rev\":42,\"sha256\":\"" HEX "\",\"at\":1} x",
        "{\"rev\":42,\"sha256\":\"" HEX_63 "\",\"at\":1}",
        "{\"rev\":42,\"sha256\":\"" HEX "a\",\"at\":1}",
        "{\"rev\":42,\"sha256\":\"A" HEX_63 "\",\"at\":1}",
        "{\"rev\":42,\"sha256\":\"x" HEX_63 "\",\"at\":1}",
        "{\"rev\":42,\"sha\":\"" HEX "\",\"at\":1}",
    };
#undef HEX
#undef HEX_63
    for (size_t i = 0; i < TG_ARRAY_LEN(bad_heads); i++) {
        if (head_parse(bad_heads[i], &h))
            fail_msg("head accepted: %s", bad_heads[i]);
        assert_int_equal(h.rev, -77); /* untouched */
    }
    static const char *const bad[] = {"", "null", "{}", "42", "not json", "{\"rev\":42}"};
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++)
        assert_false(head_parse(bad[i], &h));
    assert_false(fleet_head_parse(NULL, 0, &h));
}

/* ---- prefix, node name, endpoints ---- */

static bool prefix_ok(const char *in, char *out, size_t out_len)
{
    snprintf(out, out_len, "%s", in);
    err[0] = '\0';
    bool ok = fleet_prefix_ok(out, err, sizeof(err));
    if (!ok)
        assert_true(err[0] != '\0');
    return ok;
}

static void test_prefix(void **state)
{
    (void)state;
    char p[FLEET_PREFIX_MAX + 8];
    static const char *const good[] = {"/tollgate", "/t", "/tollgate/prod/eu-1", "/a.b_c-d~e"};
    for (size_t i = 0; i < TG_ARRAY_LEN(good); i++) {
        assert_true(prefix_ok(good[i], p, sizeof(p)));
        assert_string_equal(p, good[i]);
    }
    /* one trailing slash is removed */
    assert_true(prefix_ok("/tollgate/", p, sizeof(p)));
    assert_string_equal(p, "/tollgate");
    assert_true(prefix_ok("/t/", p, sizeof(p)));
    assert_string_equal(p, "/t");
    static const char *const bad[] = {
        "",      "/",     "//",     "tollgate",  "tollgate/",  "/a//b",      "//a",     "/a b",
        "/a\tb", "/a\nb", "/a\x7f", "/\xc3\xa9", " /tollgate", "/tollgate ", "/a/\x01",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++)
        if (prefix_ok(bad[i], p, sizeof(p)))
            fail_msg("prefix \"%s\" accepted", bad[i]);
    /* FLEET_PREFIX_MAX bytes, with or without a trailing slash */
    char *max = repeat('p', FLEET_PREFIX_MAX);
    max[0] = '/';
    assert_true(prefix_ok(max, p, sizeof(p)));
    char *over = repeat('p', FLEET_PREFIX_MAX + 1);
    over[0] = '/';
    assert_false(prefix_ok(over, p, sizeof(p)));
    over[FLEET_PREFIX_MAX] = '/';
    assert_true(prefix_ok(over, p, sizeof(p)));
    assert_int_equal(strlen(p), FLEET_PREFIX_MAX);
    free(max);
    free(over);
}

static void test_prefix_double_trailing_slash(void **state)
{
    (void)state;
    char p[64];
    if (prefix_ok("/tollgate//", p, sizeof(p)))
        assert_string_equal(p, "/tollgate");
    assert_false(prefix_ok("/a//", p, sizeof(p)));
}

static void test_node_name(void **state)
{
    (void)state;
    static const char *const good[] = {"node-1", "a", "A.b_c-9", "...", "10.0.0.1", "_"};
    for (size_t i = 0; i < TG_ARRAY_LEN(good); i++)
        assert_true(fleet_node_name_ok(good[i]));
    char *max = repeat('n', FLEET_NODE_MAX);
    assert_true(fleet_node_name_ok(max));
    static const char *const bad[] = {
        "", ".", "..", "a/b", "/a", "a b", "a\tb", "a:b", "\xc3\xa9", "a\n", "node*", "a%2f",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++)
        if (fleet_node_name_ok(bad[i]))
            fail_msg("node name \"%s\" accepted", bad[i]);
    char *over = repeat('n', FLEET_NODE_MAX + 1);
    assert_false(fleet_node_name_ok(over));
    free(max);
    free(over);
}

static bool parse_urls(char *text, struct fleet_opts *o)
{
    memset(o, 0, sizeof(*o));
    err[0] = '\0';
    bool ok = fleet_parse_urls(text, o, err, sizeof(err));
    if (!ok)
        assert_true(err[0] != '\0');
    return ok;
}

static void test_urls(void **state)
{
    (void)state;
    struct fleet_opts o;
    char one[] = "http://127.0.0.1:2379";
    assert_true(parse_urls(one, &o));
    assert_int_equal(o.n_urls, 1);
    assert_string_equal(o.urls[0], "http://127.0.0.1:2379");
    char three[] = "http://a:2379,https://b.example:2379,,http://[::1]:2379,";
    assert_true(parse_urls(three, &o));
    assert_int_equal(o.n_urls, 3);
    assert_string_equal(o.urls[0], "http://a:2379");
    assert_string_equal(o.urls[1], "https://b.example:2379");
    assert_string_equal(o.urls[2], "http://[::1]:2379");
    /* twins: empty lists */
    char empty[] = "", commas[] = ",,,";
    assert_false(parse_urls(empty, &o));
    assert_string_equal(err, "no URL");
    assert_false(parse_urls(commas, &o));
    assert_string_equal(err, "no URL");
    /* not http or https */
    static const char *const bad[] = {
        "ftp://a:21",       "HTTP://a:2379",   "a:2379",         "127.0.0.1:2379",
        "unix:///run/etcd", "http:/a:2379",    "http://a :2379", " http://a:2379",
        "http://a:2379\n",  "http://a:2379\t", "http://a\r:1",   "http://a:2379/v3?x=1",
        "https://a:2379?x", "http://ab?",      "https://a?",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        char buf[64];
        snprintf(buf, sizeof(buf), "%s", bad[i]);
        if (parse_urls(buf, &o))
            fail_msg("URL list \"%s\" accepted", bad[i]);
        assert_non_null(strstr(err, "is not an http:// or https:// URL"));
    }
    /* a bad URL after good ones */
    char mixed[] = "http://a:1,http://b:2,ftp://c:3";
    assert_false(parse_urls(mixed, &o));
    assert_non_null(strstr(err, "ftp://c:3"));
    /* 16 URLs, then 17 */
    char list[17 * 32] = "";
    size_t n = 0;
    for (int i = 0; i < ETCD_URLS_MAX; i++)
        n += (size_t)snprintf(list + n, sizeof(list) - n, "%shttp://e%d:2379", i ? "," : "", i);
    char copy[sizeof(list)];
    memcpy(copy, list, sizeof(list));
    assert_true(parse_urls(copy, &o));
    assert_int_equal(o.n_urls, ETCD_URLS_MAX);
    assert_string_equal(o.urls[ETCD_URLS_MAX - 1], "http://e15:2379");
    snprintf(list + n, sizeof(list) - n, ",http://e16:2379");
    assert_false(parse_urls(list, &o));
    assert_string_equal(err, "at most 16 URLs");
    /* 512 bytes, then 513 */
    char *url = repeat('h', 513);
    memcpy(url, "http://", 7);
    url[512] = '\0';
    assert_true(parse_urls(url, &o));
    url[512] = 'h';
    assert_false(parse_urls(url, &o));
    free(url);
}

static void test_urls_scheme_only(void **state)
{
    (void)state;
    /* '?' and '#' right after the scheme; nothing after it (a URL that
     * ends the buffer, so that a look past its end would be seen by ASan) */
    static const char *const bad[] = {"http://?x", "https://?x", "http://#x", "http://a#b"};
    struct fleet_opts o;
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        char buf[16];
        snprintf(buf, sizeof(buf), "%s", bad[i]);
        if (parse_urls(buf, &o))
            fail_msg("URL list \"%s\" accepted", bad[i]);
    }
    static const char *const bare[] = {"http://", "https://"};
    for (size_t i = 0; i < TG_ARRAY_LEN(bare); i++) {
        char *tail = malloc(strlen(bare[i]) + 1);
        assert_non_null(tail);
        memcpy(tail, bare[i], strlen(bare[i]) + 1);
        assert_false(parse_urls(tail, &o));
        free(tail);
    }
    /* twins: the shortest with a host */
    char ab[] = "http://ab", a[] = "https://a";
    assert_true(parse_urls(ab, &o));
    assert_true(parse_urls(a, &o));
}

static void test_urls_one_letter_host(void **state)
{
    (void)state;
    struct fleet_opts o;
    char e[] = "http://e";
    assert_true(parse_urls(e, &o));
}

/* ---- base64 ---- */

static void test_b64_round_trip(void **state)
{
    (void)state;
    uint8_t data[300];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof(data); n++) {
        char *s = fleet_b64_encode(data, n);
        assert_non_null(s);
        assert_int_equal(strlen(s), 4 * ((n + 2) / 3));
        uint8_t *out = NULL;
        size_t out_len = 99;
        assert_true(fleet_b64_decode(s, strlen(s), n, &out, &out_len));
        assert_int_equal(out_len, n);
        assert_non_null(out);
        assert_memory_equal(out, data, n);
        assert_int_equal(out[n], 0);
        free(out);
        /* twin: one byte less allowed than it holds */
        if (n > 0) {
            assert_false(fleet_b64_decode(s, strlen(s), n - 1, &out, &out_len));
            assert_null(out);
            assert_int_equal(out_len, 0);
        }
        free(s);
    }
    /* RFC 4648 §10 */
    static const char *const vec[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(vec); i++) {
        char *s = fleet_b64_encode((const uint8_t *)vec[i][0], strlen(vec[i][0]));
        assert_string_equal(s, vec[i][1]);
        free(s);
    }
    /* every byte value */
    uint8_t all[256];
    for (size_t i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    char *s = fleet_b64_encode(all, sizeof(all));
    uint8_t *out = NULL;
    size_t out_len = 0;
    assert_true(fleet_b64_decode(s, strlen(s), 256, &out, &out_len));
    assert_int_equal(out_len, 256);
    assert_memory_equal(out, all, 256);
    free(out);
    free(s);
}

static void test_b64_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "A",        "AA",        "AAA",
        "AAAAA",    "Zg=",       "Zg",
        "====",     "A===",      "AA=A",
        "A=AA",     "=AAA",      "Zg==Zg==",
        "Zm9v===",  "Zm9v====",  "Zm 9v",
        "Zm9v\n",   " Zm9",      "Zm9\t",
        "Zm-v",     "Zm_v",      "Zm.v",
        "Zg==\n",   "Zh==",      "Zm9=",
        "Zm8=Zm8=", "Zm9v Zm9v", "\x80\x80\x80\x80",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        uint8_t *out = (uint8_t *)bad;
        size_t out_len = 7;
        if (fleet_b64_decode(bad[i], strlen(bad[i]), 64, &out, &out_len))
            fail_msg("\"%s\" decoded", bad[i]);
        assert_null(out);
        assert_int_equal(out_len, 0);
    }
    /* a NUL inside */
    uint8_t *out = NULL;
    size_t out_len = 0;
    assert_false(fleet_b64_decode("Zm\0v", 4, 64, &out, &out_len));
    /* twins of the spare-bit and padding cases */
    static const char *const good[][2] = {
        {"Zg==", "f"}, {"Zm8=", "fo"}, {"Zm9v", "foo"}, {"", ""}, {"+/+/", "\xfb\xff\xbf"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(good); i++) {
        assert_true(fleet_b64_decode(good[i][0], strlen(good[i][0]), 64, &out, &out_len));
        assert_int_equal(out_len, strlen(good[i][1]));
        assert_memory_equal(out, good[i][1], out_len);
        free(out);
    }
    /* max 0: only the empty string */
    assert_true(fleet_b64_decode("", 0, 0, &out, &out_len));
    assert_int_equal(out_len, 0);
    free(out);
    assert_false(fleet_b64_decode("Zg==", 4, 0, &out, &out_len));
    /* the length is what counts, not the terminating NUL */
    assert_true(fleet_b64_decode("Zm9vYmFy", 4, 3, &out, &out_len));
    assert_memory_equal(out, "foo", 3);
    free(out);
}

/* ---- the cache ---- */

/* The source machine's files and config, under dir/src. */
static const char cache_yaml[] =
    "certificates:\n"
    "  site: { cert: pki/server.crt, key: pki/server.key }\n"
    "client_cas:\n"
    "  partners: { ca: pki/root.crt, crl: pki/clients.crl }\n"
    "target_groups:\n"
    "  web: { targets: [ { address: 127.0.0.1:8080 } ] }\n"
    "listeners:\n"
    "  - name: api\n"
    "    protocol: https\n"
    "    listen: 127.0.0.1:18443\n"
    "    default_target_group: web\n"
    "    tls: { mode: mutual, certificates: [site], client_ca: partners,\n"
    "           allow_file: pki/partners.allow }\n";

static void src_write(const char *name, const char *text, mode_t mode)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "src/%s", name);
    write_path(path_of(rel), text, strlen(text), mode);
}

/* The files of cache_yaml with their first contents. */
static void src_reset(void)
{
    mkdir(path_of("src"), 0700);
    mkdir(path_of("src/pki"), 0700);
    src_write("pki/server.crt", "server certificate 1\n", 0644);
    src_write("pki/server.key", "server key 1\n", 0600);
    src_write("pki/root.crt", "root certificate 1\n", 0644);
    src_write("pki/clients.crl", "crl 1\n", 0644);
    src_write("pki/partners.allow", "subject_cn alice\n", 0644);
}

static enum tg_status store_blob(void *arg, const struct fleet_file *f, const uint8_t *data)
{
    const char *cache = arg;
    char path[1024];
    snprintf(path, sizeof(path), "%s/blobs/%s", cache, f->sha);
    write_path(path, data, f->size, 0600);
    return TG_OK;
}

/*
 * What "fleet push" does, without etcd: loads yaml as dir/src/tollgate.yaml,
 * collects its files into r (blobs stored into the cache), and writes the
 * document as revision rev of the cache. r stays the caller's.
 */
static void push(const char *cache, const char *yaml, int64_t rev, bool with_keys,
                 struct fleet_rev *r)
{
    struct diag d;
    struct config *cfg = NULL;
    const char *src = path_of("src");
    char name[512];
    snprintf(name, sizeof(name), "%s/tollgate.yaml", src);
    diag_init(&d);
    enum tg_status st = config_load_buffer(name, src, yaml, strlen(yaml), &cfg, &d);
    if (st != TG_OK)
        diag_print(&d, stderr);
    assert_int_equal(st, TG_OK);
    memset(r, 0, sizeof(*r));
    st = fleet_rev_collect(cfg, with_keys, r, store_blob, (void *)cache, &d);
    if (st != TG_OK)
        diag_print(&d, stderr);
    assert_int_equal(st, TG_OK);
    diag_fini(&d);
    config_free(cfg);
    r->rev = rev;
    r->parent = rev - 1;
    r->at = 1700000000 + rev;
    r->by = xstrdup("test@host");
    r->message = xstrdup("");
    r->config_path = xstrdup(name);
    r->config_text = xstrdup(yaml);
    r->config_len = strlen(yaml);
    fleet_rev_digest(r);
    char *text = fleet_rev_encode(r);
    assert_non_null(text);
    char path[1024];
    snprintf(path, sizeof(path), "%s/revs/%lld.json", cache, (long long)rev);
    write_path(path, text, strlen(text), 0600);
    free(text);
}

/* A fresh cache directory under dir (its path in a buffer of its own, as
 * path_of's are reused). */
static const char *cache_new(const char *name)
{
    static char c[512];
    snprintf(c, sizeof(c), "%s", path_of(name));
    if (fleet_cache_init(c, err, sizeof(err)) != TG_OK)
        fail_msg("%s", err);
    return c;
}

static struct config *cache_load(const char *cache, const struct fleet_rev *r, bool is_staged)
{
    struct diag d;
    struct config *cfg = NULL;
    diag_init(&d);
    enum tg_status st = fleet_cache_load(cache, r, is_staged, &cfg, &d);
    if (st != TG_OK || d.n != 0)
        diag_print(&d, stderr);
    assert_int_equal(st, TG_OK);
    assert_int_equal(d.n, 0);
    diag_fini(&d);
    return cfg;
}

static void test_cache_init(void **state)
{
    (void)state;
    const char *c = path_of("init");
    assert_int_equal(fleet_cache_init(c, err, sizeof(err)), TG_OK);
    /* files/ and the way to it searchable (workers read files by name),
     * revs/ and blobs/ private */
    static const struct {
        const char *sub;
        mode_t mode;
    } want[] = {{"", 0711}, {"/revs", 0700}, {"/blobs", 0700}, {"/files", 0711}};
    char p[1024];
    for (size_t i = 0; i < TG_ARRAY_LEN(want); i++) {
        snprintf(p, sizeof(p), "%s%s", c, want[i].sub);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        if ((st.st_mode & 07777) != want[i].mode)
            fail_msg("%s: mode %o, want %o", p, st.st_mode & 07777, want[i].mode);
    }
    /* again: nothing to do */
    assert_int_equal(fleet_cache_init(c, err, sizeof(err)), TG_OK);
    /* an existing cache directory keeps its mode; its subdirectories get
     * theirs */
    const char *own = path_of("init-own");
    assert_int_equal(mkdir(own, 0750), 0);
    assert_int_equal(chmod(own, 0750), 0);
    snprintf(p, sizeof(p), "%s/blobs", own);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(chmod(p, 0755), 0);
    assert_int_equal(fleet_cache_init(own, err, sizeof(err)), TG_OK);
    assert_int_equal(mode_of(own), 0750);
    assert_int_equal(mode_of(p), 0700);
    /* twins: a file where the cache or one of its directories should be */
    const char *file = path_of("init-file");
    write_path(file, "x", 1, 0600);
    err[0] = '\0';
    assert_int_equal(fleet_cache_init(file, err, sizeof(err)), TG_E_CONFIG);
    assert_non_null(strstr(err, "not a directory"));
    const char *partial = path_of("init-partial");
    assert_int_equal(mkdir(partial, 0700), 0);
    snprintf(p, sizeof(p), "%s/blobs", partial);
    write_path(p, "x", 1, 0600);
    err[0] = '\0';
    assert_int_equal(fleet_cache_init(partial, err, sizeof(err)), TG_E_CONFIG);
    assert_non_null(strstr(err, p));
    assert_non_null(strstr(err, "not a directory"));
    /* a parent that does not exist */
    err[0] = '\0';
    assert_int_equal(fleet_cache_init(path_of("nope/cache"), err, sizeof(err)), TG_E_CONFIG);
    assert_non_null(strstr(err, "cannot create"));
}

static void test_cache_applied(void **state)
{
    (void)state;
    const char *c = cache_new("applied");
    char p[1024];
    snprintf(p, sizeof(p), "%s/applied", c);
    assert_int_equal(fleet_cache_applied(c), 0);
    assert_int_equal(fleet_cache_set_applied(c, 42, err, sizeof(err)), TG_OK);
    assert_int_equal(fleet_cache_applied(c), 42);
    assert_int_equal(mode_of(p), 0600);
    assert_int_equal(fleet_cache_set_applied(c, INT64_MAX, err, sizeof(err)), TG_OK);
    assert_true(fleet_cache_applied(c) == INT64_MAX);
    write_path(p, "7", 1, 0600);
    assert_int_equal(fleet_cache_applied(c), 7);
    /* twins: garbage reads as 0 */
    static const char *const garbage[] = {
        "", "\n", "abc\n", "12abc\n", "-5\n", "0\n", "1.5\n", "0x10\n", "7 \n",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(garbage); i++) {
        write_path(p, garbage[i], strlen(garbage[i]), 0600);
        if (fleet_cache_applied(c) != 0)
            fail_msg("\"%s\" read as %lld", garbage[i], (long long)fleet_cache_applied(c));
    }
    char *big = repeat('1', 65);
    write_path(p, big, 65, 0600);
    assert_int_equal(fleet_cache_applied(c), 0);
    free(big);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(fleet_cache_applied(c), 0);
    assert_int_equal(rmdir(p), 0);
    /* a cache that is not there */
    err[0] = '\0';
    assert_int_equal(fleet_cache_applied(path_of("nope")), 0);
    assert_int_not_equal(fleet_cache_set_applied(path_of("nope"), 1, err, sizeof(err)), TG_OK);
    assert_true(err[0] != '\0');
}

static void test_cache_applied_overflow(void **state)
{
    (void)state;
    const char *c = cache_new("applied-overflow");
    char p[1024];
    snprintf(p, sizeof(p), "%s/applied", c);
    write_path(p, "99999999999999999999\n", 21, 0600);
    assert_int_equal(fleet_cache_applied(c), 0);
}

static void test_cache_read(void **state)
{
    (void)state;
    const char *c = cache_new("read");
    struct fleet_rev r, got;
    src_reset();
    push(c, cache_yaml, 1, false, &r);
    assert_int_equal(r.n_files, 4);
    assert_int_equal(r.n_local, 1);
    assert_int_equal(fleet_cache_read(c, 1, &got, err, sizeof(err)), TG_OK);
    assert_rev_equal(&got, &r);
    fleet_rev_free(&got);
    /* twins: a revision that is not there */
    err[0] = '\0';
    assert_int_equal(fleet_cache_read(c, 2, &got, err, sizeof(err)), TG_E_CONFIG);
    assert_non_null(strstr(err, "revs/2.json"));
    /* a document that names another revision */
    char from[1024], to[1024];
    snprintf(from, sizeof(from), "%s/revs/1.json", c);
    snprintf(to, sizeof(to), "%s/revs/5.json", c);
    size_t len = 0;
    char *text = read_path(from, &len);
    assert_non_null(text);
    write_path(to, text, len, 0600);
    err[0] = '\0';
    assert_int_equal(fleet_cache_read(c, 5, &got, err, sizeof(err)), TG_E_PROTO);
    assert_non_null(strstr(err, "holds revision 1"));
    /* a damaged document */
    text[len / 2] ^= 1;
    write_path(to, text, len, 0600);
    assert_int_not_equal(fleet_cache_read(c, 5, &got, err, sizeof(err)), TG_OK);
    free(text);
    /* a blob missing */
    char blob[1024], moved[1024];
    snprintf(blob, sizeof(blob), "%s/blobs/%s", c, r.files[2].sha);
    snprintf(moved, sizeof(moved), "%s/moved", c);
    assert_int_equal(rename(blob, moved), 0);
    err[0] = '\0';
    assert_int_equal(fleet_cache_read(c, 1, &got, err, sizeof(err)), TG_E_CONFIG);
    assert_non_null(strstr(err, "missing"));
    assert_non_null(strstr(err, r.files[2].path));
    assert_int_equal(rename(moved, blob), 0);
    assert_int_equal(fleet_cache_read(c, 1, &got, err, sizeof(err)), TG_OK);
    fleet_rev_free(&got);
    fleet_rev_free(&r);
}

/* The path the running config reads for the file at src/name. */
static const char *stable_of(const struct config *cfg, const char *what)
{
    if (strcmp(what, "crl") == 0)
        return cfg->client_cas[0].crl;
    if (strcmp(what, "ca") == 0)
        return cfg->client_cas[0].ca;
    if (strcmp(what, "cert") == 0)
        return cfg->certificates[0].cert;
    if (strcmp(what, "key") == 0)
        return cfg->certificates[0].key;
    return cfg->listeners[0].tls.sites[0].allow_file;
}

static void assert_file_is(const char *path, const char *text)
{
    size_t len = 0;
    char *got = read_path(path, &len);
    if (got == NULL)
        fail_msg("%s: %s", path, strerror(errno));
    assert_int_equal(len, strlen(text));
    assert_memory_equal(got, text, len);
    free(got);
}

static ino_t inode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_ino;
}

static void test_cache_load_and_install(void **state)
{
    (void)state;
    const char *c = cache_new("install");
    char files[1024], blobs[1024], p[2048];
    snprintf(files, sizeof(files), "%s/files/", c);
    snprintf(blobs, sizeof(blobs), "%s/blobs/", c);
    struct fleet_rev r1, r2;
    src_reset();
    push(c, cache_yaml, 1, true, &r1);
    assert_int_equal(r1.n_files, 5);
    assert_int_equal(r1.n_local, 0);

    /* staged: every file from blobs/ */
    struct config *staged = cache_load(c, &r1, true);
    static const char *const what[] = {"cert", "key", "ca", "crl", "allow"};
    for (size_t i = 0; i < TG_ARRAY_LEN(what); i++)
        assert_true(strncmp(stable_of(staged, what[i]), blobs, strlen(blobs)) == 0);
    assert_string_equal(staged->client_cas[0].crl + strlen(blobs), r1.files[3].sha);
    config_free(staged);

    /* installed: every file under files/, with the contents pushed */
    assert_int_equal(fleet_cache_install(c, &r1, err, sizeof(err)), TG_OK);
    struct config *cfg1 = cache_load(c, &r1, false);
    for (size_t i = 0; i < TG_ARRAY_LEN(what); i++) {
        const char *s = stable_of(cfg1, what[i]);
        assert_true(strncmp(s, files, strlen(files)) == 0);
        /* named by the path's hash, then its last component */
        assert_int_equal(s[strlen(files) + 16], '-');
    }
    assert_string_equal(strchr(stable_of(cfg1, "crl") + strlen(files), '-'), "-clients.crl");
    assert_file_is(stable_of(cfg1, "crl"), "crl 1\n");
    assert_file_is(stable_of(cfg1, "allow"), "subject_cn alice\n");
    assert_file_is(stable_of(cfg1, "key"), "server key 1\n");
    /* keys 0600, the others 0644 */
    assert_int_equal(mode_of(stable_of(cfg1, "key")), 0600);
    assert_int_equal(mode_of(stable_of(cfg1, "cert")), 0644);
    assert_int_equal(mode_of(stable_of(cfg1, "crl")), 0644);
    ino_t crl_ino = inode_of(stable_of(cfg1, "crl"));
    ino_t cert_ino = inode_of(stable_of(cfg1, "cert"));
    /* installing again changes nothing */
    assert_int_equal(fleet_cache_install(c, &r1, err, sizeof(err)), TG_OK);
    assert_true(inode_of(stable_of(cfg1, "crl")) == crl_ino);

    /* revision 2 changes the CRL: the same name, new contents, the other
     * files left as they were */
    src_write("pki/clients.crl", "crl 2\n", 0644);
    push(c, cache_yaml, 2, true, &r2);
    struct config *cfg2 = cache_load(c, &r2, false);
    for (size_t i = 0; i < TG_ARRAY_LEN(what); i++)
        assert_string_equal(stable_of(cfg1, what[i]), stable_of(cfg2, what[i]));
    assert_file_is(stable_of(cfg1, "crl"), "crl 1\n");
    assert_int_equal(fleet_cache_install(c, &r2, err, sizeof(err)), TG_OK);
    assert_file_is(stable_of(cfg1, "crl"), "crl 2\n");
    assert_true(inode_of(stable_of(cfg1, "crl")) != crl_ino);
    assert_true(inode_of(stable_of(cfg1, "cert")) == cert_ino);
    assert_int_equal(mode_of(stable_of(cfg1, "crl")), 0644);
    /* back to revision 1 (a rollback): the old contents again */
    assert_int_equal(fleet_cache_install(c, &r1, err, sizeof(err)), TG_OK);
    assert_file_is(stable_of(cfg1, "crl"), "crl 1\n");

    /* a file changed by hand under files/ is put back */
    write_path(stable_of(cfg1, "allow"), "subject_cn mallory\n", 19, 0644);
    assert_int_equal(fleet_cache_install(c, &r1, err, sizeof(err)), TG_OK);
    assert_file_is(stable_of(cfg1, "allow"), "subject_cn alice\n");

    /* twin: a blob missing fails the install */
    snprintf(p, sizeof(p), "%s%s", blobs, r2.files[3].sha);
    assert_int_equal(unlink(p), 0);
    err[0] = '\0';
    assert_int_not_equal(fleet_cache_install(c, &r2, err, sizeof(err)), TG_OK);
    assert_true(err[0] != '\0');
    assert_file_is(stable_of(cfg1, "crl"), "crl 1\n");
    /* and the staged load of that revision */
    struct diag d;
    struct config *none = NULL;
    diag_init(&d);
    assert_int_not_equal(fleet_cache_load(c, &r2, true, &none, &d), TG_OK);
    assert_null(none);
    assert_true(d.n_errors > 0);
    diag_fini(&d);

    config_free(cfg1);
    config_free(cfg2);
    fleet_rev_free(&r1);
    fleet_rev_free(&r2);
}

static void test_cache_local_key(void **state)
{
    (void)state;
    const char *c = cache_new("local");
    struct fleet_rev r;
    src_reset();
    push(c, cache_yaml, 1, false, &r);
    assert_int_equal(r.n_local, 1);
    assert_string_equal(r.local[0], path_of("src/pki/server.key"));
    assert_int_equal(fleet_cache_install(c, &r, err, sizeof(err)), TG_OK);
    struct config *cfg = cache_load(c, &r, false);
    /* the key is read where the config names it, on this node */
    assert_string_equal(cfg->certificates[0].key, path_of("src/pki/server.key"));
    config_free(cfg);
    /* twin: a node without the key does not load the revision */
    char moved[1024];
    snprintf(moved, sizeof(moved), "%s/moved.key", c);
    assert_int_equal(rename(path_of("src/pki/server.key"), moved), 0);
    struct diag d;
    diag_init(&d);
    assert_int_not_equal(fleet_cache_load(c, &r, false, &cfg, &d), TG_OK);
    assert_true(d.n_errors > 0);
    diag_fini(&d);
    assert_int_equal(rename(moved, path_of("src/pki/server.key")), 0);
    fleet_rev_free(&r);
}

static void test_cache_stable_names(void **state)
{
    (void)state;
    /* Two files with the same last component in two directories get two
     * names; odd characters are replaced in the name, not in the hash. */
    const char *c = cache_new("names");
    src_reset();
    assert_int_equal(mkdir(path_of("src/other"), 0700), 0);
    src_write("other/root.crt", "other root\n", 0644);
    src_write("pki/odd name$.crl", "odd crl\n", 0644);
    static const char yaml[] =
        "certificates:\n"
        "  site: { cert: pki/server.crt, key: pki/server.key }\n"
        "client_cas:\n"
        "  a: { ca: pki/root.crt, crl: \"pki/odd name$.crl\" }\n"
        "  b: { ca: other/root.crt }\n"
        "target_groups:\n"
        "  web: { targets: [ { address: 127.0.0.1:8080 } ] }\n"
        "listeners:\n"
        "  - { name: api, protocol: https, listen: 127.0.0.1:18443, default_target_group: web,\n"
        "      tls: { certificates: [site] } }\n";
    struct fleet_rev r;
    push(c, yaml, 1, false, &r);
    assert_int_equal(fleet_cache_install(c, &r, err, sizeof(err)), TG_OK);
    struct config *cfg = cache_load(c, &r, false);
    const char *a = cfg->client_cas[0].ca, *b = cfg->client_cas[1].ca;
    assert_string_not_equal(a, b);
    assert_string_equal(strrchr(a, '-'), "-root.crt");
    assert_string_equal(strrchr(b, '-'), "-root.crt");
    assert_file_is(a, "root certificate 1\n");
    assert_file_is(b, "other root\n");
    assert_non_null(strstr(cfg->client_cas[0].crl, "-odd_name_.crl"));
    assert_file_is(cfg->client_cas[0].crl, "odd crl\n");
    config_free(cfg);
    fleet_rev_free(&r);
}

static void test_only_watched_changed(void **state)
{
    (void)state;
    const char *c = cache_new("watched");
    struct fleet_rev base, crl, allow, both, cert, text, nokeys, r;
    src_reset();
    push(c, cache_yaml, 1, true, &base);
    assert_int_equal(fleet_cache_install(c, &base, err, sizeof(err)), TG_OK);
    struct config *cfg = cache_load(c, &base, false);
    src_write("pki/clients.crl", "crl 2\n", 0644);
    push(c, cache_yaml, 2, true, &crl);
    src_write("pki/partners.allow", "subject_cn bob\n", 0644);
    push(c, cache_yaml, 3, true, &both);
    src_write("pki/clients.crl", "crl 1\n", 0644);
    push(c, cache_yaml, 4, true, &allow);
    src_reset();
    src_write("pki/server.crt", "server certificate 2\n", 0644);
    push(c, cache_yaml, 5, true, &cert);
    src_reset();
    char *yaml2 = malloc(sizeof(cache_yaml) + 16);
    assert_non_null(yaml2);
    snprintf(yaml2, sizeof(cache_yaml) + 16, "%s# changed\n", cache_yaml);
    push(c, yaml2, 6, true, &text);
    push(c, cache_yaml, 7, false, &nokeys);

    assert_true(fleet_rev_only_watched_changed(c, &crl, &base, cfg));
    assert_true(fleet_rev_only_watched_changed(c, &base, &crl, cfg));
    assert_true(fleet_rev_only_watched_changed(c, &allow, &base, cfg));
    assert_true(fleet_rev_only_watched_changed(c, &both, &base, cfg));
    assert_true(fleet_rev_only_watched_changed(c, &both, &crl, cfg));
    /* nothing changed: nothing but watched files either */
    assert_true(fleet_rev_only_watched_changed(c, &base, &base, cfg));
    /* twins: a certificate, the config text, a key made local */
    assert_false(fleet_rev_only_watched_changed(c, &cert, &base, cfg));
    assert_false(fleet_rev_only_watched_changed(c, &text, &base, cfg));
    assert_false(fleet_rev_only_watched_changed(c, &nokeys, &base, cfg));
    assert_false(fleet_rev_only_watched_changed(c, &base, &nokeys, cfg));
    /* the config file moved on the pushing machine */
    json_t *j = doc_json(&crl);
    json_object_set_new(j, "config_path", json_string("/elsewhere/tollgate.yaml"));
    redigest(j);
    char *doc = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    assert_accepted_text(doc, strlen(doc), &r);
    free(doc);
    assert_false(fleet_rev_only_watched_changed(c, &r, &base, cfg));
    fleet_rev_free(&r);
    /* a key that turns sealed or not: not a watched change */
    char *doc1 = fleet_rev_encode(&crl);
    assert_accepted_text(doc1, strlen(doc1), &r);
    free(doc1);
    for (size_t i = 0; i < r.n_files; i++)
        if (strcmp(r.files[i].path, path_of("src/pki/server.key")) == 0)
            r.files[i].is_secret = false;
    assert_false(fleet_rev_only_watched_changed(c, &r, &base, cfg));
    fleet_rev_free(&r);
    /* nothing to compare */
    assert_false(fleet_rev_only_watched_changed(c, NULL, &base, cfg));
    assert_false(fleet_rev_only_watched_changed(c, &crl, NULL, cfg));
    assert_false(fleet_rev_only_watched_changed(c, &crl, &base, NULL));
    /* a config loaded staged reads blobs/: it watches nothing of files/ */
    struct config *staged = cache_load(c, &base, true);
    assert_false(fleet_rev_only_watched_changed(c, &crl, &base, staged));
    config_free(staged);

    config_free(cfg);
    free(yaml2);
    fleet_rev_free(&base);
    fleet_rev_free(&crl);
    fleet_rev_free(&allow);
    fleet_rev_free(&both);
    fleet_rev_free(&cert);
    fleet_rev_free(&text);
    fleet_rev_free(&nokeys);
}

static void test_only_watched_file_also_read_otherwise(void **state)
{
    (void)state;
    const char *c = cache_new("watched-both");
    static const char yaml[] =
        "certificates:\n"
        "  site: { cert: pki/server.crt, key: pki/server.key }\n"
        "client_cas:\n"
        "  partners: { ca: pki/root.crt, crl: pki/root.crt }\n"
        "target_groups:\n"
        "  web: { targets: [ { address: 127.0.0.1:8080 } ] }\n"
        "listeners:\n"
        "  - name: api\n"
        "    protocol: https\n"
        "    listen: 127.0.0.1:18443\n"
        "    default_target_group: web\n"
        "    tls: { mode: mutual, certificates: [site], client_ca: partners }\n";
    struct fleet_rev a, b;
    src_reset();
    push(c, yaml, 1, false, &a);
    assert_int_equal(fleet_cache_install(c, &a, err, sizeof(err)), TG_OK);
    struct config *cfg = cache_load(c, &a, false);
    assert_string_equal(cfg->client_cas[0].ca, cfg->client_cas[0].crl);
    src_write("pki/root.crt", "root certificate 2 and its crl\n", 0644);
    push(c, yaml, 2, false, &b);
    assert_false(fleet_rev_only_watched_changed(c, &b, &a, cfg));
    config_free(cfg);
    fleet_rev_free(&a);
    fleet_rev_free(&b);
}

/* ---- ${NAME} in config values ---- */

static enum tg_status expand(const char *s, char **out, size_t *out_len)
{
    err[0] = '\0';
    *out = (char *)s;
    *out_len = 99;
    return cfg_expand_env(s, strlen(s), out, out_len, err, sizeof(err));
}

static void assert_expands(const char *s, const char *want)
{
    char *out;
    size_t len;
    if (expand(s, &out, &len) != TG_OK)
        fail_msg("\"%s\": %s", s, err);
    assert_non_null(out);
    assert_int_equal(len, strlen(want));
    assert_string_equal(out, want);
    free(out);
}

static void assert_expand_refused(const char *s, const char *why)
{
    char *out;
    size_t len;
    assert_int_equal(expand(s, &out, &len), TG_E_CONFIG);
    assert_null(out);
    assert_int_equal(len, 0);
    if (strstr(err, why) == NULL)
        fail_msg("\"%s\": error \"%s\" does not say \"%s\"", s, err, why);
}

static int env_setup(void **state)
{
    (void)state;
    unsetenv("TG_T_UNSET");
    return setenv("TG_T_A", "alpha", 1) || setenv("TG_T_B", "beta", 1) ||
           setenv("TG_T_EMPTY", "", 1) || setenv("TG_T_REF", "${TG_T_A}", 1) ||
           setenv("TG_T_PKI", "pki", 1);
}

static void test_env_expand(void **state)
{
    (void)state;
    assert_expands("${TG_T_A}", "alpha");
    assert_expands("x${TG_T_A}y", "xalphay");
    assert_expands("${TG_T_A:-default}", "alpha");
    assert_expands("${TG_T_UNSET:-default}", "default");
    assert_expands("${TG_T_EMPTY:-default}", "default");
    assert_expands("${TG_T_EMPTY}", "");
    assert_expands("${TG_T_UNSET:-}", "");
    assert_expands("${TG_T_UNSET:-a:b c-d $x}", "a:b c-d $x");
    assert_expands("${TG_T_A}${TG_T_B}", "alphabeta");
    assert_expands("${TG_T_A}-${TG_T_UNSET:-b}-$${TG_T_C}-${TG_T_A}", "alpha-b-${TG_T_C}-alpha");
    /* a value is not expanded again */
    assert_expands("${TG_T_REF}", "${TG_T_A}");
    /* $${ is a literal ${, and a $ alone is a $ */
    assert_expands("$${TG_T_A}", "${TG_T_A}");
    assert_expands("$${", "${");
    assert_expands("a$b$${c}${TG_T_A}$", "a$b${c}alpha$");
    assert_expands("$$${TG_T_A}", "$${TG_T_A}");
    /* the default ends at the first } */
    assert_expands("${TG_T_UNSET:-a}b}", "ab}");
    /* nothing to expand: *out is NULL */
    static const char *const plain[] = {"", "plain", "$", "$$", "$TG_T_A", "{TG_T_A}", "$ {x}"};
    for (size_t i = 0; i < TG_ARRAY_LEN(plain); i++) {
        char *out;
        size_t len;
        assert_int_equal(expand(plain[i], &out, &len), TG_OK);
        assert_null(out);
        assert_int_equal(len, 0);
    }
    /* the length given is what is read */
    char *out;
    size_t len;
    assert_int_equal(cfg_expand_env("${TG_T_A}${TG_T_B}", 9, &out, &len, err, sizeof(err)), TG_OK);
    assert_string_equal(out, "alpha");
    free(out);
    assert_int_equal(cfg_expand_env("${TG_T_A}", 8, &out, &len, err, sizeof(err)), TG_E_CONFIG);
}

static void test_env_unset(void **state)
{
    (void)state;
    assert_expand_refused("${TG_T_UNSET}",
                          "environment variable TG_T_UNSET is not set (give a default: "
                          "${TG_T_UNSET:-VALUE})");
    assert_expand_refused("${TG_T_A}/${TG_T_UNSET}", "TG_T_UNSET is not set");
    /* twin: set to the empty string, it is empty */
    assert_expands("${TG_T_EMPTY}/x", "/x");
}

static void test_env_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "${",          "x${",         "${}",         "${1A}",       "${TG_T_A",
        "${TG_T_A",    "${TG_T_A-d}", "${TG_T_A:d}", "${TG_T_A:-d", "${TG_T_A B}",
        "${ TG_T_A}",  "${TG_T_A }",  "${-}",        "${:-d}",      "${TG-T}",
        "${\xc3\xa9}", "${TG_T_A}${", "${TG_T_A:}",  "${$TG_T_A}",  "${{TG_T_A}}",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++)
        assert_expand_refused(bad[i], "\"${\" starts ${NAME} or ${NAME:-default}");
    assert_expand_refused("${", "write $${ for a literal ${");
    /* twins: a name starting with _ or a letter, digits after */
    assert_int_equal(setenv("_TG_1", "one", 1), 0);
    assert_expands("${_TG_1}", "one");
    assert_expands("${_TG_1:-x}", "one");
    assert_int_equal(unsetenv("_TG_1"), 0);
}

static void test_env_name_length(void **state)
{
    (void)state;
    char name[CFG_ENV_NAME_MAX + 2], ref[CFG_ENV_NAME_MAX + 16];
    memset(name, 'N', sizeof(name));
    name[CFG_ENV_NAME_MAX] = '\0';
    assert_int_equal(setenv(name, "long", 1), 0);
    snprintf(ref, sizeof(ref), "${%s}", name);
    assert_expands(ref, "long");
    snprintf(ref, sizeof(ref), "${%s:-d}", name);
    assert_expands(ref, "long");
    /* twin: one more character, set or not */
    name[CFG_ENV_NAME_MAX] = 'N';
    name[CFG_ENV_NAME_MAX + 1] = '\0';
    assert_int_equal(setenv(name, "longer", 1), 0);
    snprintf(ref, sizeof(ref), "${%s}", name);
    assert_expand_refused(ref, "at most 64");
    snprintf(ref, sizeof(ref), "${%s:-d}", name);
    assert_expand_refused(ref, "at most 64");
    assert_int_equal(unsetenv(name), 0);
    name[CFG_ENV_NAME_MAX] = '\0';
    assert_int_equal(unsetenv(name), 0);
}

static void test_env_value_length(void **state)
{
    (void)state;
    char *max = repeat('v', CFG_ENV_VALUE_MAX);
    assert_int_equal(setenv("TG_T_LONG", max, 1), 0);
    assert_expands("${TG_T_LONG}", max);
    assert_expand_refused("x${TG_T_LONG}", "longer than 4096 bytes once expanded");
    assert_expand_refused("${TG_T_LONG}x", "longer than 4096 bytes once expanded");
    assert_expand_refused("${TG_T_LONG}$${", "longer than 4096 bytes once expanded");
    /* a default over the limit */
    char *ref = malloc(CFG_ENV_VALUE_MAX + 32);
    assert_non_null(ref);
    snprintf(ref, CFG_ENV_VALUE_MAX + 32, "${TG_T_UNSET:-%s}", max);
    assert_expands(ref, max);
    snprintf(ref, CFG_ENV_VALUE_MAX + 32, "${TG_T_UNSET:-%sv}", max);
    assert_expand_refused(ref, "longer than 4096");
    /* literal text around a reference counts too */
    snprintf(ref, CFG_ENV_VALUE_MAX + 32, "%.*s${TG_T_A}", CFG_ENV_VALUE_MAX - 5, max);
    char *want = repeat('v', CFG_ENV_VALUE_MAX);
    memcpy(want + CFG_ENV_VALUE_MAX - 5, "alpha", 5);
    assert_expands(ref, want);
    snprintf(ref, CFG_ENV_VALUE_MAX + 32, "%.*s${TG_T_A}", CFG_ENV_VALUE_MAX - 4, max);
    assert_expand_refused(ref, "longer than 4096");
    /* without a reference nothing is expanded, and nothing bounded here */
    snprintf(ref, CFG_ENV_VALUE_MAX + 32, "%sv", max);
    char *out;
    size_t len;
    assert_int_equal(expand(ref, &out, &len), TG_OK);
    assert_null(out);
    assert_int_equal(unsetenv("TG_T_LONG"), 0);
    free(want);
    free(ref);
    free(max);
}

/* Loads a config whose certificate path is cert and whose target address
 * is addr (line 3 col 11 and line 8 col 18; block style, since in a flow
 * mapping { and } end a plain scalar); prints the diagnostics of an
 * unexpected failure when is_ok. */
static enum tg_status env_load(const char *cert, const char *addr, bool is_ok, struct config **cfg,
                               struct diag *d)
{
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "certificates:\n"
             "  site:\n"
             "    cert: %s\n"
             "    key: pki/server.key\n"
             "target_groups:\n"
             "  web:\n"
             "    targets:\n"
             "      - address: %s\n"
             "listeners:\n"
             "  - { name: api, protocol: https, listen: 127.0.0.1:18443,\n"
             "      default_target_group: web, tls: { certificates: [site] } }\n",
             cert, addr);
    diag_init(d);
    *cfg = NULL;
    enum tg_status st = config_load_buffer("t.yaml", path_of("src"), yaml, strlen(yaml), cfg, d);
    if (st != TG_OK && is_ok)
        diag_print(d, stderr);
    return st;
}

static void test_env_in_config(void **state)
{
    (void)state;
    struct config *cfg;
    struct diag d;
    char line[1024];
    src_reset();
    assert_int_equal(setenv("TG_T_ADDR", "127.0.0.1:8081", 1), 0);
    /* plain and double-quoted scalars are expanded */
    assert_int_equal(env_load("${TG_T_PKI}/server.crt", "\"${TG_T_ADDR}\"", true, &cfg, &d), TG_OK);
    assert_string_equal(cfg->certificates[0].cert, path_of("src/pki/server.crt"));
    assert_string_equal(cfg->target_groups[0].targets[0].address, "127.0.0.1:8081");
    config_free(cfg);
    diag_fini(&d);
    assert_int_equal(
        env_load("\"${TG_T_UNSET:-pki}/server.crt\"", "127.0.0.1:8080", true, &cfg, &d), TG_OK);
    assert_string_equal(cfg->certificates[0].cert, path_of("src/pki/server.crt"));
    config_free(cfg);
    diag_fini(&d);
    /* twin: a single-quoted scalar is taken as it is */
    assert_int_equal(env_load("'${TG_T_PKI}/server.crt'", "127.0.0.1:8080", false, &cfg, &d),
                     TG_E_CONFIG);
    assert_null(cfg);
    assert_true(d.n_errors >= 1);
    diag_format(&d, 0, line, sizeof(line));
    if (strstr(line, "src/${TG_T_PKI}/server.crt") == NULL ||
        strstr(line, "t.yaml:3:5: certificates.site.cert") == NULL)
        fail_msg("got \"%s\"", line);
    diag_fini(&d);
    assert_int_equal(env_load("'$${TG_T_PKI}'", "127.0.0.1:8080", false, &cfg, &d), TG_E_CONFIG);
    diag_format(&d, 0, line, sizeof(line));
    if (strstr(line, "src/$${TG_T_PKI}") == NULL)
        fail_msg("got \"%s\"", line);
    diag_fini(&d);

    /* errors carry line:col, each of them */
    assert_int_equal(env_load("${TG_T_UNSET}", "${TG_T_ADDR", false, &cfg, &d), TG_E_CONFIG);
    assert_null(cfg);
    static const char bad[] = "t.yaml:8:18: \"${\" starts ${NAME}";
    bool has_unset = false, has_bad = false;
    for (size_t i = 0; i < d.n; i++) {
        diag_format(&d, i, line, sizeof(line));
        has_unset =
            has_unset || strcmp(line, "t.yaml:3:11: environment variable TG_T_UNSET is "
                                      "not set (give a default: ${TG_T_UNSET:-VALUE})") == 0;
        has_bad = has_bad || strncmp(line, bad, strlen(bad)) == 0;
    }
    if (!has_unset || !has_bad)
        diag_print(&d, stderr);
    assert_true(has_unset);
    assert_true(has_bad);
    diag_fini(&d);
    assert_int_equal(unsetenv("TG_T_ADDR"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rev_round_trip),
        cmocka_unit_test(test_rev_not_json),
        cmocka_unit_test(test_rev_duplicate_keys),
        cmocka_unit_test(test_rev_format_and_numbers),
        cmocka_unit_test(test_rev_missing_fields),
        cmocka_unit_test(test_rev_wrong_types),
        cmocka_unit_test(test_rev_text_bounds),
        cmocka_unit_test(test_rev_paths),
        cmocka_unit_test(test_rev_file_sha),
        cmocka_unit_test(test_rev_file_size),
        cmocka_unit_test(test_rev_same_path_twice),
        cmocka_unit_test(test_rev_files_max),
        cmocka_unit_test(test_rev_digest_mismatch),
        cmocka_unit_test(test_rev_too_large),
        cmocka_unit_test(test_head_parse),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_prefix_double_trailing_slash),
        cmocka_unit_test(test_node_name),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_urls_scheme_only),
        cmocka_unit_test(test_urls_one_letter_host),
        cmocka_unit_test(test_b64_round_trip),
        cmocka_unit_test(test_b64_refused),
        cmocka_unit_test(test_cache_init),
        cmocka_unit_test(test_cache_applied),
        cmocka_unit_test(test_cache_applied_overflow),
        cmocka_unit_test(test_cache_read),
        cmocka_unit_test(test_cache_load_and_install),
        cmocka_unit_test(test_cache_local_key),
        cmocka_unit_test(test_cache_stable_names),
        cmocka_unit_test(test_only_watched_changed),
        cmocka_unit_test(test_only_watched_file_also_read_otherwise),
        cmocka_unit_test(test_env_expand),
        cmocka_unit_test(test_env_unset),
        cmocka_unit_test(test_env_malformed),
        cmocka_unit_test(test_env_name_length),
        cmocka_unit_test(test_env_value_length),
        cmocka_unit_test(test_env_in_config),
    };
    if (env_setup(NULL) != 0)
        return 1;
    return cmocka_run_group_tests(tests, setup, teardown);
}
