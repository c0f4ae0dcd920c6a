/* Refused handshakes for /status: the last ones with their certificate
 * names, and the counts by reason per minute over the last hour. */
#include "admin/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- peer text as JSON strings ---- */

/* The length of the well-formed UTF-8 character (RFC 3629 §4) at s, or 0. */
static size_t utf8_char_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* no overlong forms */
        if (c == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

void admin_utf8_clean(char *s)
{
    unsigned char *p = (unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = utf8_char_len(p + i, n - i);
        if (k == 0) {
            p[i] = '?';
            k = 1;
        }
        i += k;
    }
}

static json_t *clean_string(const char *s, size_t cap)
{
    char tmp[SHM_REFUSAL_NAME];
    size_t n = strnlen(s, cap < sizeof(tmp) ? cap : sizeof(tmp) - 1);
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    admin_utf8_clean(tmp);
    return json_string(tmp);
}

static json_t *iso_time_ms(int64_t ms)
{
    char buf[64];
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

json_t *admin_refusal_json(const struct shm_refusal *r, const char *listener)
{
    json_t *j = json_object();
    if (j == NULL)
        return NULL;
    json_object_set_new(j, "listener", json_string(listener));
    json_object_set_new(j, "reason", json_string(shm_reason_name(r->reason)));
    json_object_set_new(j, "client", clean_string(r->client, sizeof(r->client)));
    json_object_set_new(j, "subject", clean_string(r->subject, sizeof(r->subject)));
    json_object_set_new(j, "issuer", clean_string(r->issuer, sizeof(r->issuer)));
    json_object_set_new(j, "at", iso_time_ms(r->unix_ms));
    json_object_set_new(j, "at_unix", json_real((double)r->unix_ms / 1000.0));
    return j;
}

/* ---- counts by minute ---- */

/* Slots of the minute ring: the last hour. */
#define HIST_SLOTS ADMIN_HIST_MINUTES

struct admin_hist_listener {
    char *name;                 /* owned */
    int64_t minute[HIST_SLOTS]; /* the minute (Unix seconds / 60) a slot counts; -1 = none */
    uint64_t count[HIST_SLOTS][SHM_REASON_COUNT]; /* refusals first seen in that minute */
    uint64_t last[SHM_REASON_COUNT];              /* totals at the last sample */
    int64_t last_minute;
    struct admin_hist_listener *next;
};

static struct admin_hist_listener *hist_find(const struct admin_hist *h, const char *name)
{
    for (struct admin_hist_listener *l = h->ls; l != NULL; l = l->next)
        if (strcmp(l->name, name) == 0)
            return l;
    return NULL;
}

enum tg_status admin_hist_note(struct admin_hist *h, const char *listener,
                               const uint64_t totals[SHM_REASON_COUNT], int64_t now_unix)
{
    int64_t m = now_unix / 60;
    struct admin_hist_listener *l = hist_find(h, listener);
    if (l == NULL) {
        /* The first sample is the baseline: what came before it has no time. */
        l = calloc(1, sizeof(*l));
        if (l == NULL || (l->name = strdup(listener)) == NULL) {
            free(l);
            return TG_E_NOMEM;
        }
        for (size_t i = 0; i < HIST_SLOTS; i++)
            l->minute[i] = -1;
        memcpy(l->last, totals, sizeof(l->last));
        l->last_minute = m;
        l->next = h->ls;
        h->ls = l;
        return TG_OK;
    }
    size_t slot = (size_t)(m % HIST_SLOTS);
    if (l->minute[slot] != m) {
        l->minute[slot] = m;
        memset(l->count[slot], 0, sizeof(l->count[slot]));
    }
    for (size_t r = 0; r < SHM_REASON_COUNT; r++)
        if (totals[r] > l->last[r])
            l->count[slot][r] += totals[r] - l->last[r];
    memcpy(l->last, totals, sizeof(l->last));
    l->last_minute = m;
    return TG_OK;
}

void admin_hist_prune(struct admin_hist *h, int64_t now_unix)
{
    struct admin_hist_listener **pp = &h->ls;
    while (*pp != NULL) {
        struct admin_hist_listener *l = *pp;
        if (now_unix / 60 - l->last_minute > ADMIN_HIST_MINUTES) {
            *pp = l->next;
            free(l->name);
            free(l);
        } else {
            pp = &l->next;
        }
    }
}

void admin_hist_fini(struct admin_hist *h)
{
    admin_hist_prune(h, INT64_MAX / 2);
    h->ls = NULL;
}

json_t *admin_hist_json(const struct admin_hist *h, const char *listener, int64_t now_unix)
{
    int64_t now_m = now_unix / 60, start = now_m - ADMIN_HIST_MINUTES + 1;
    json_t *by_reason = json_object();
    json_t *j = json_pack("{s:I,s:i,s:o}", "start_unix", (json_int_t)(start * 60), "step_seconds",
                          60, "by_reason", by_reason);
    const struct admin_hist_listener *l = hist_find(h, listener);
    if (j == NULL || l == NULL)
        return j;
    for (size_t r = 0; r < SHM_REASON_COUNT; r++) {
        json_t *arr = NULL;
        for (int64_t m = start; m <= now_m; m++) {
            size_t slot = (size_t)(m % HIST_SLOTS);
            if (m < 0 || l->minute[slot] != m || l->count[slot][r] == 0)
                continue;
            if (arr == NULL) {
                arr = json_array();
                for (size_t i = 0; arr != NULL && i < ADMIN_HIST_MINUTES; i++)
                    json_array_append_new(arr, json_integer(0));
                if (arr == NULL)
                    break;
                json_object_set_new(by_reason, shm_reason_name(r), arr);
            }
            json_array_set_new(arr, (size_t)(m - start),
                               json_integer((json_int_t)l->count[slot][r]));
        }
    }
    return j;
}
