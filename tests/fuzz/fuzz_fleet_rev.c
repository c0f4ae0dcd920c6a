/*
 * Fuzzes what a fleet node reads of a revision from etcd or its cache: the
 * revision document (fleet_rev_decode) and the head (fleet_head_parse).
 *
 * A mutated document seldom gets past its own digest, so the input is
 * decoded twice: as it is, and (when it is a JSON object with the fields
 * the digest covers) with "sha256" replaced by a digest this file computes
 * on its own from those fields. The second reading reaches every field
 * check, and it must never say that the digest does not match: the two
 * ways of computing it agree.
 *
 * Whatever decodes is sound: rev >= 1, parent and at >= 0, "by" and
 * "message" within FLEET_TEXT_MAX, absolute paths without a control
 * character or a ".." segment, lowercase 64-digit file digests, no path
 * shipped twice, sizes within ETCD_VALUE_MAX, at most FLEET_FILES_MAX
 * files and local paths; it encodes to a document that decodes to the same
 * revision and encodes to the same bytes again. A refused document leaves
 * the revision empty and gives a reason. A head that parses has rev >= 1
 * and a lowercase 64-digit digest.
 *
 * clang -fsanitize=fuzzer -DTG_LIBFUZZER builds a fuzzer; otherwise main()
 * replays every file in the directory given as argv[1].
 */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#include "fleet/etcd.h"
#include "fleet/internal.h"
#include "fleet/rev.h"
#include "rev_digest.h"

static bool fz_is_hex64(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

static void fz_check_path(const char *p)
{
    size_t n = strlen(p);
    CHECK(n >= 1 && n <= 4095 && p[0] == '/');
    for (size_t i = 0; i < n; i++)
        CHECK((unsigned char)p[i] >= 0x20 && p[i] != 0x7f);
    CHECK(strstr(p, "/../") == NULL);
    CHECK(n < 3 || strcmp(p + n - 3, "/..") != 0);
}

static void fz_check_sound(const struct fleet_rev *r)
{
    CHECK(r->rev >= 1 && r->parent >= 0 && r->at >= 0);
    CHECK(r->by != NULL && strlen(r->by) <= FLEET_TEXT_MAX);
    CHECK(r->message != NULL && strlen(r->message) <= FLEET_TEXT_MAX);
    fz_check_path(r->config_path);
    CHECK(r->config_text != NULL && r->config_len <= FLEET_REV_MAX);
    CHECK(r->config_text[r->config_len] == '\0');
    CHECK(r->n_files <= FLEET_FILES_MAX && r->n_local <= FLEET_FILES_MAX);
    for (size_t i = 0; i < r->n_files; i++) {
        fz_check_path(r->files[i].path);
        CHECK(fz_is_hex64(r->files[i].sha));
        CHECK(r->files[i].size <= ETCD_VALUE_MAX);
        for (size_t k = 0; k < i; k++)
            CHECK(strcmp(r->files[i].path, r->files[k].path) != 0);
    }
    for (size_t i = 0; i < r->n_local; i++)
        fz_check_path(r->local[i]);
    CHECK(fz_is_hex64(r->sha));
}

static bool fz_same(const struct fleet_rev *a, const struct fleet_rev *b)
{
    bool same = a->rev == b->rev && a->parent == b->parent && a->at == b->at &&
                strcmp(a->by, b->by) == 0 && strcmp(a->message, b->message) == 0 &&
                strcmp(a->config_path, b->config_path) == 0 && a->config_len == b->config_len &&
                memcmp(a->config_text, b->config_text, a->config_len) == 0 &&
                a->n_files == b->n_files && a->n_local == b->n_local && strcmp(a->sha, b->sha) == 0;
    for (size_t i = 0; same && i < a->n_files; i++)
        same = strcmp(a->files[i].path, b->files[i].path) == 0 &&
               strcmp(a->files[i].sha, b->files[i].sha) == 0 &&
               a->files[i].size == b->files[i].size &&
               a->files[i].is_secret == b->files[i].is_secret;
    for (size_t i = 0; same && i < a->n_local; i++)
        same = strcmp(a->local[i], b->local[i]) == 0;
    return same;
}

/* Decodes data[0..size) and checks what comes out either way. */
static enum tg_status fz_decode(const char *data, size_t size, char *err, size_t err_len)
{
    static const struct fleet_rev zero;
    struct fleet_rev r, again;
    memset(&r, 0xa5, sizeof(r));
    err[0] = '\0';
    enum tg_status st = fleet_rev_decode(data, size, &r, err, err_len);
    CHECK(st == TG_OK || st == TG_E_PROTO);
    if (st != TG_OK) {
        CHECK(memcmp(&r, &zero, sizeof(zero)) == 0);
        CHECK(err[0] != '\0' && memchr(err, '\0', err_len) != NULL);
        return st;
    }
    fz_check_sound(&r);
    char *text = fleet_rev_encode(&r);
    CHECK(text != NULL);
    char why[256];
    CHECK(fleet_rev_decode(text, strlen(text), &again, why, sizeof(why)) == TG_OK);
    CHECK(fz_same(&r, &again));
    char *text2 = fleet_rev_encode(&again);
    CHECK(text2 != NULL && strcmp(text, text2) == 0);
    free(text2);
    free(text);
    fleet_rev_free(&again);
    fleet_rev_free(&r);
    return TG_OK;
}

static void fz_head(const uint8_t *data, size_t size)
{
    struct fleet_head h;
    memset(&h, 0, sizeof(h));
    if (!fleet_head_parse(data, size, &h))
        return;
    CHECK(h.rev >= 1);
    CHECK(fz_is_hex64(h.sha));
    CHECK(memchr(h.by, '\0', sizeof(h.by)) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    fz_head(data, size);
    (void)fz_decode((const char *)data, size, err, sizeof(err));

    /* The same document with its digest made right. */
    json_error_t jerr;
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    char hex[65];
    if (json_is_object(j) && rev_digest_json(j, hex)) {
        json_object_set_new(j, "sha256", json_string(hex));
        char *text = json_dumps(j, JSON_COMPACT);
        CHECK(text != NULL);
        if (fz_decode(text, strlen(text), err, sizeof(err)) != TG_OK)
            CHECK(strstr(err, "does not match") == NULL);
        free(text);
    }
    json_decref(j);
    return 0;
}
