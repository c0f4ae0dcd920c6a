#include "admin/admin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void out_reserve(struct admin_out *o, size_t more)
{
    if (o->failed || o->len + more + 1 <= o->cap)
        return;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + more + 1)
        cap *= 2;
    char *p = realloc(o->p, cap);
    if (p == NULL) {
        o->failed = true;
        return;
    }
    o->p = p;
    o->cap = cap;
}

void admin_out_printf(struct admin_out *o, const char *fmt, ...)
{
    if (o->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->failed = true;
        return;
    }
    out_reserve(o, (size_t)n);
    if (o->failed)
        return;
    if ((size_t)n < sizeof(small)) {
        memcpy(o->p + o->len, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(o->p + o->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    o->len += (size_t)n;
}

void admin_out_fini(struct admin_out *o)
{
    free(o->p);
    memset(o, 0, sizeof(*o));
}

void admin_label_escape(struct admin_out *o, const char *v)
{
    for (const char *s = v ? v : ""; *s != '\0'; s++) {
        if (*s == '\\')
            admin_out_printf(o, "\\\\");
        else if (*s == '"')
            admin_out_printf(o, "\\\"");
        else if (*s == '\n')
            admin_out_printf(o, "\\n");
        else
            admin_out_printf(o, "%c", *s);
    }
}

void admin_out_double(struct admin_out *o, double v)
{
    if (isinf(v))
        admin_out_printf(o, v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
        admin_out_printf(o, "NaN");
    else
        admin_out_printf(o, "%.15g", v);
}

void admin_out_histogram(struct admin_out *o, const char *name, const char *labels,
                         const struct shm_hist *h)
{
    uint64_t cum = 0;
    const char *sep = labels[0] != '\0' ? "," : "";
    for (size_t i = 0; i <= SHM_HIST_BOUNDS; i++) {
        cum += shm_get(&h->buckets[i]);
        admin_out_printf(o, "%s_bucket{%s%sle=\"", name, labels, sep);
        if (i < SHM_HIST_BOUNDS)
            admin_out_printf(o, "%g", shm_hist_bound(i));
        else
            admin_out_printf(o, "+Inf");
        admin_out_printf(o, "\"} %llu\n", (unsigned long long)cum);
    }
    admin_out_printf(o, "%s_sum{%s} ", name, labels);
    admin_out_double(o, (double)shm_get(&h->sum_ns) / 1e9);
    admin_out_printf(o, "\n%s_count{%s} %llu\n", name, labels, (unsigned long long)cum);
}
