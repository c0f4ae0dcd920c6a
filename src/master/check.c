/* tollgate check */
#include <stdio.h>

#include "config/config.h"
#include "core/diag.h"
#include "master/master.h"
#include "tls/tls.h"

int master_cmd_check(const char *path, bool is_json)
{
    struct diag d;
    struct config *cfg = NULL;
    diag_init(&d);
    if (config_load(path, &cfg, &d) == TG_OK)
        tls_config_check(cfg, &d);
    int rc = diag_has_errors(&d) ? 1 : 0;
    if (is_json) {
        diag_print_json(&d, stdout);
        goto out;
    }
    diag_print(&d, stderr);
    if (rc == 0)
        printf("%s: configuration ok (%zu warning%s)\n", path, d.n_warnings,
               d.n_warnings == 1 ? "" : "s");
    else
        fprintf(stderr, "%s: %zu error%s, %zu warning%s\n", path, d.n_errors,
                d.n_errors == 1 ? "" : "s", d.n_warnings, d.n_warnings == 1 ? "" : "s");
out:
    config_free(cfg);
    diag_fini(&d);
    return rc;
}
