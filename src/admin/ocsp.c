/* The OCSP staple of each server certificate, for /status and /metrics. */
#include "admin/internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static json_t *iso(int64_t t)
{
    char buf[32];
    time_t s = (time_t)t;
    struct tm tm;
    if (t <= 0 || gmtime_r(&s, &tm) == NULL ||
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return json_null();
    return json_string(buf);
}

json_t *admin_ocsp_json(const struct ocsp_shm *shm, size_t slot, int64_t now)
{
    struct ocsp_info info;
    if (!ocsp_shm_info(shm, slot, &info))
        return json_null();
    bool has = (info.state == OCSP_STATE_GOOD || info.state == OCSP_STATE_REVOKED) &&
               info.len > 0 && now < info.next_update;
    json_t *j = json_object();
    if (j == NULL)
        return json_null();
    json_object_set_new(j, "status", json_string(ocsp_state_name(info.state)));
    json_object_set_new(j, "stapled", json_boolean(has));
    json_object_set_new(j, "this_update", iso(info.this_update));
    json_object_set_new(j, "next_update", iso(info.next_update));
    json_object_set_new(j, "next_update_unix",
                        info.next_update > 0 ? json_integer(info.next_update) : json_null());
    json_object_set_new(j, "updated_at", iso(info.updated_at));
    json_t *err = json_null();
    if (info.last_error[0] != '\0') {
        char clean[OCSP_ERROR_MAX];
        memcpy(clean, info.last_error, sizeof(clean));
        admin_utf8_clean(clean);
        err = json_string(clean);
    }
    json_object_set_new(j, "last_error", err ? err : json_null());
    json_object_set_new(j, "last_error_at", iso(info.last_error_at));
    return j;
}

void admin_ocsp_annotate(json_t *certs, const struct config *cfg, const struct ocsp_shm *shm)
{
    size_t i;
    json_t *c;
    int64_t now = (int64_t)time(NULL);
    json_array_foreach(certs, i, c)
    {
        const char *kind = json_string_value(json_object_get(c, "kind"));
        const char *role = json_string_value(json_object_get(c, "role"));
        const char *name = json_string_value(json_object_get(c, "name"));
        if (kind == NULL || role == NULL || name == NULL || strcmp(kind, "server") != 0 ||
            strcmp(role, "leaf") != 0)
            continue;
        const struct cfg_certificate *e = config_find_certificate(cfg, name);
        json_t *j =
            e != NULL ? admin_ocsp_json(shm, (size_t)(e - cfg->certificates), now) : json_null();
        json_object_set_new(c, "ocsp", j);
    }
}

void admin_ocsp_metrics(const struct config *cfg, const struct ocsp_shm *shm, struct admin_out *o)
{
    static const uint32_t states[] = {OCSP_STATE_GOOD, OCSP_STATE_REVOKED, OCSP_STATE_NONE};
    int64_t now = (int64_t)time(NULL);
    bool is_first = true;
    for (size_t i = 0; i < cfg->n_certificates; i++) {
        struct ocsp_info info;
        if (!ocsp_shm_info(shm, i, &info) || info.state == OCSP_STATE_OFF)
            continue;
        bool has = (info.state == OCSP_STATE_GOOD || info.state == OCSP_STATE_REVOKED) &&
                   info.len > 0 && now < info.next_update;
        if (is_first)
            admin_out_printf(o, "# HELP tollgate_ocsp_staple_next_update_seconds Seconds until "
                                "the nextUpdate of the OCSP response stapled for a certificate; "
                                "-1 when none is stapled.\n"
                                "# TYPE tollgate_ocsp_staple_next_update_seconds gauge\n");
        is_first = false;
        admin_out_printf(o, "tollgate_ocsp_staple_next_update_seconds{certificate=\"");
        admin_label_escape(o, cfg->certificates[i].name);
        admin_out_printf(o, "\"} %lld\n", has ? (long long)(info.next_update - now) : -1LL);
    }
    is_first = true;
    for (size_t i = 0; i < cfg->n_certificates; i++) {
        struct ocsp_info info;
        if (!ocsp_shm_info(shm, i, &info) || info.state == OCSP_STATE_OFF)
            continue;
        bool has = (info.state == OCSP_STATE_GOOD || info.state == OCSP_STATE_REVOKED) &&
                   info.len > 0 && now < info.next_update;
        uint32_t cur = has ? info.state : OCSP_STATE_NONE;
        if (is_first)
            admin_out_printf(o, "# HELP tollgate_ocsp_staple_status The OCSP status stapled for "
                                "a certificate: 1 for the current one (none: nothing stapled).\n"
                                "# TYPE tollgate_ocsp_staple_status gauge\n");
        is_first = false;
        for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++) {
            admin_out_printf(o, "tollgate_ocsp_staple_status{certificate=\"");
            admin_label_escape(o, cfg->certificates[i].name);
            admin_out_printf(o, "\",status=\"%s\"} %d\n", ocsp_state_name(states[k]),
                             cur == states[k] ? 1 : 0);
        }
    }
}
