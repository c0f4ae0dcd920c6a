/*
 * Fuzzes what tollgate reads of a ClientHello before OpenSSL does: the
 * server_name extension (tls_sni_from_hello) and the site a name picks
 * (config_site_for_name), on a listener with exact and wildcard sni
 * entries. The input is the extension's body. A name it gives is inside
 * the input, terminated, 1-255 bytes without NUL; the site is one of the
 * listener's; and a wildcard site's name ends in that wildcard's suffix.
 *
 * clang -fsanitize=fuzzer -DTG_LIBFUZZER builds a fuzzer; otherwise main()
 * replays every file in the directory given as argv[1].
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#include "config/config.h"
#include "tls/tls.h"

static const char cfg_text[] = "certificates: { s: { cert: /dev/null, key: /dev/null } }\n"
                               "target_groups: { g: { targets: [ { address: 127.0.0.1:9 } ] } }\n"
                               "listeners:\n"
                               "  - name: l\n"
                               "    protocol: https\n"
                               "    listen: 127.0.0.1:9\n"
                               "    default_target_group: g\n"
                               "    tls:\n"
                               "      certificates: [s]\n"
                               "      sni:\n"
                               "        - names: [api.test, \"*.api.test\"]\n"
                               "        - names: [\"*.eu.api.test\"]\n"
                               "        - names: [other.test]\n";

/* The listener, parsed once (the loader only looks at the files it names:
 * /dev/null is there). */
static struct cfg_listener *listener(void)
{
    static struct config *cfg;
    if (cfg == NULL) {
        struct diag d;
        diag_init(&d);
        enum tg_status st =
            config_load_buffer("fuzz.yaml", NULL, cfg_text, sizeof(cfg_text) - 1, &cfg, &d);
        if (st != TG_OK)
            diag_print(&d, stderr);
        diag_fini(&d);
        CHECK(st == TG_OK && cfg != NULL);
    }
    return &cfg->listeners[0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct cfg_listener *l = listener();
    char name[256];
    memset(name, 0x5a, sizeof(name));
    if (!tls_sni_from_hello(data, size, name, sizeof(name)))
        return 0;
    size_t n = strlen(name);
    CHECK(n >= 1 && n <= 255 && n + 5 <= size);
    CHECK(memmem(data, size, name, n) != NULL);
    size_t site = config_site_for_name(l, name, n);
    CHECK(site < l->tls.n_sites);
    if (site == 2) {
        size_t len = n > 1 && name[n - 1] == '.' ? n - 1 : n;
        CHECK(len > 12 && strncasecmp(name + len - 12, ".eu.api.test", 12) == 0);
    }
    return 0;
}
