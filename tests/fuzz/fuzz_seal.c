/*
 * Fuzzes what a node reads of the sealed session-ticket keys in etcd. The
 * input is taken both as a token (fleet_tickets_open, with the fuzz secret
 * and key name below) and as a plaintext (fleet_tickets_decode), since a
 * changed token seldom gets past the tag. Whatever opens is a sound set
 * (1 to TICKET_KEYS_MAX keys, enc among them) that seals and opens again
 * to the same set; a plaintext that decodes encodes to the same bytes
 * (one encoding per set); and anything refused leaves the set wiped, the
 * counters 0 and a reason.
 *
 * The seed tokens were sealed with the secret and key name below by a
 * separate AES-GCM, the seed plaintexts after the layout in fleet/seal.h.
 *
 * clang -fsanitize=fuzzer -DTG_LIBFUZZER builds a fuzzer; otherwise main()
 * replays every file in the directory given as argv[1].
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#include "fleet/seal.h"

static const char fz_ikm[] = "tollgate fuzz fleet secret, not a real one";
static const char fz_aad[] = "/tollgate/fuzz/tickets";

static const struct fleet_secret *secret(void)
{
    static struct fleet_secret s;
    static bool is_ready;
    if (!is_ready) {
        CHECK(fleet_secret_derive((const uint8_t *)fz_ikm, sizeof(fz_ikm) - 1, &s) == TG_OK);
        is_ready = true;
    }
    return &s;
}

static void check_refused(const struct ticket_set *set, uint64_t rot, uint64_t gen, const char *err)
{
    static const struct ticket_set zero;
    CHECK(memcmp(set, &zero, sizeof(zero)) == 0);
    CHECK(rot == 0 && gen == 0);
    CHECK(err[0] != '\0' && memchr(err, '\0', 256) != NULL);
}

/* set, sealed again and opened, is the same set with the same counters. */
static void check_reseal(const struct ticket_set *set, uint64_t rot, uint64_t gen)
{
    struct ticket_set again;
    uint64_t rot2 = 0, gen2 = 0;
    char err[256] = "";
    CHECK(set->n >= 1 && set->n <= TICKET_KEYS_MAX && set->enc < set->n);
    char *tok = fleet_tickets_seal(secret(), fz_aad, set, rot, gen);
    CHECK(tok != NULL && strlen(tok) <= FLEET_TOKEN_MAX);
    CHECK(fleet_tickets_open(secret(), fz_aad, tok, strlen(tok), &again, &rot2, &gen2, err,
                             sizeof(err)) == TG_OK);
    CHECK(memcmp(&again, set, sizeof(again)) == 0 && rot2 == rot && gen2 == gen);
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ticket_set set;
    uint64_t rot = 7, gen = 7;
    char err[256];

    memset(&set, 0xa5, sizeof(set));
    err[0] = '\0';
    enum tg_status st = fleet_tickets_open(secret(), fz_aad, (const char *)data, size, &set, &rot,
                                           &gen, err, sizeof(err));
    CHECK(st == TG_OK || st == TG_E_PROTO);
    if (st == TG_OK)
        check_reseal(&set, rot, gen);
    else
        check_refused(&set, rot, gen, err);

    memset(&set, 0xa5, sizeof(set));
    rot = gen = 7;
    err[0] = '\0';
    st = fleet_tickets_decode(data, size, &set, &rot, &gen, err, sizeof(err));
    CHECK(st == TG_OK || st == TG_E_PROTO);
    if (st != TG_OK) {
        check_refused(&set, rot, gen, err);
        return 0;
    }
    uint8_t out[FLEET_TICKETS_MAX];
    CHECK(fleet_tickets_encode(&set, rot, gen, out) == size);
    CHECK(memcmp(out, data, size) == 0);
    check_reseal(&set, rot, gen);
    return 0;
}
