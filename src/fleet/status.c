/* The fleet as its nodes describe themselves: fleet status, and the
 * "fleet" object of every node's /status. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fleet/fleet.h"
#include "fleet/internal.h"

#define VIEW_NODES_MAX 256

/* A node's entry as it wrote it: only the fields fleet status uses are
 * required to have their type. */
static bool node_ok(const json_t *n)
{
    const json_t *err = json_object_get(n, "error");
    return json_is_object(n) && json_is_string(json_object_get(n, "node")) &&
           json_is_integer(json_object_get(n, "rev")) &&
           (err == NULL || json_is_null(err) || json_is_object(err)) &&
           (json_object_get(n, "targets") == NULL || json_is_array(json_object_get(n, "targets")));
}

enum tg_status fleet_view_read(struct etcd *e, const char *prefix, json_t **out, char *err,
                               size_t err_len)
{
    char key[512];
    struct fleet_head head;
    struct etcd_kvs kvs;
    *out = NULL;
    /* An unreadable head is shown as such: the nodes are still worth
     * seeing. */
    char head_err[512];
    enum tg_status hs = fleet_head_read(e, prefix, &head, head_err, sizeof(head_err));
    if (hs == TG_E_CLOSED) {
        snprintf(err, err_len, "%s", head_err);
        return TG_E_CLOSED;
    }
    snprintf(key, sizeof(key), "%s/nodes/", prefix);
    if (etcd_get_prefix(e, key, VIEW_NODES_MAX, &kvs) != TG_OK) {
        snprintf(err, err_len, "%s", etcd_error(e));
        return TG_E_CLOSED;
    }
    json_t *nodes = json_array();
    size_t bad = 0;
    for (size_t i = 0; i < kvs.n; i++) {
        json_error_t jerr;
        json_t *n = json_loadb((const char *)kvs.v[i].value, kvs.v[i].len, 0, &jerr);
        if (node_ok(n))
            json_array_append_new(nodes, n);
        else {
            json_decref(n);
            bad++;
        }
    }
    etcd_kvs_free(&kvs);
    /* Node names that more than one node uses (each hidden one says so). */
    json_t *dup = json_array();
    snprintf(key, sizeof(key), "%s/conflicts/", prefix);
    if (etcd_get_prefix(e, key, VIEW_NODES_MAX, &kvs) == TG_OK) {
        for (size_t i = 0; i < kvs.n; i++) {
            const char *rest = kvs.v[i].key + strlen(key);
            const char *slash =
                strncmp(kvs.v[i].key, key, strlen(key)) == 0 ? strchr(rest, '/') : NULL;
            if (slash != NULL && slash > rest)
                json_array_append_new(dup, json_stringn(rest, (size_t)(slash - rest)));
        }
        etcd_kvs_free(&kvs);
    }
    json_t *h = json_pack("{s:I,s:s,s:s,s:I}", "rev", (json_int_t)head.rev, "sha256", head.sha,
                          "by", head.by, "at", (json_int_t)head.at);
    if (hs != TG_OK)
        json_object_set_new(h, "error", json_string(head_err));
    *out = json_pack("{s:s,s:o,s:o,s:I,s:o}", "prefix", prefix, "head", h, "nodes", nodes,
                     "unreadable", (json_int_t)bad, "names_in_use_twice", dup);
    return *out != NULL ? TG_OK : TG_E_NOMEM;
}

static const char *str_or(const json_t *o, const char *k, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : dflt;
}

#define TARGET_ROWS_MAX 1000 /* rows of the targets table printed */

/* "GROUP/ADDRESS" of a target entry. */
static void target_name(const json_t *t, char *dst, size_t len)
{
    snprintf(dst, len, "%s/%s", str_or(t, "group", "?"), str_or(t, "address", "?"));
}

/* One line per target any node knows, one column per node: each node's
 * targets indexed once by name. */
static void print_targets(const json_t *nodes)
{
    size_t n = json_array_size(nodes);
    json_t *index = json_array(); /* per node: {name: state} */
    json_t *rows = json_array();  /* names, in the order first seen */
    json_t *seen = json_object();
    for (size_t i = 0; i < n; i++) {
        json_t *by_name = json_object();
        const json_t *ts = json_object_get(json_array_get(nodes, i), "targets");
        for (size_t k = 0; k < json_array_size(ts); k++) {
            const json_t *t = json_array_get(ts, k);
            char name[300];
            target_name(t, name, sizeof(name));
            json_object_set_new(by_name, name, json_string(str_or(t, "state", "-")));
            if (json_object_get(seen, name) == NULL) {
                json_object_set_new(seen, name, json_true());
                json_array_append_new(rows, json_string(name));
            }
        }
        json_array_append_new(index, by_name);
    }
    if (json_array_size(rows) > 0) {
        printf("\ntargets, as each node sees them:\n%-40s", "GROUP/TARGET");
        for (size_t i = 0; i < n; i++)
            printf(" %-12.12s", str_or(json_array_get(nodes, i), "node", "?"));
        putchar('\n');
    }
    for (size_t r = 0; r < json_array_size(rows) && r < TARGET_ROWS_MAX; r++) {
        const char *name = json_string_value(json_array_get(rows, r));
        printf("%-40.120s", name);
        for (size_t c = 0; c < n; c++) {
            const char *state = json_string_value(json_object_get(json_array_get(index, c), name));
            printf(" %-12.12s", state ? state : "-");
        }
        putchar('\n');
    }
    if (json_array_size(rows) > TARGET_ROWS_MAX)
        printf("(%zu more targets: --format json shows them)\n",
               json_array_size(rows) - TARGET_ROWS_MAX);
    json_decref(index);
    json_decref(rows);
    json_decref(seen);
}

/* Replaces, in every string of j, what a terminal would act on (C0 and C1
 * controls, DEL) by '?': whoever writes to the prefix writes what text
 * output prints. */
void fleet_json_printable(json_t *j)
{
    if (json_is_string(j)) {
        size_t len = json_string_length(j);
        char *s = strndup(json_string_value(j), len);
        if (s == NULL)
            return;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x20 || c == 0x7f)
                s[i] = '?';
            else if (c == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] >= 0x80 &&
                     (unsigned char)s[i + 1] <= 0x9f)
                s[i] = s[i + 1] = '?';
        }
        json_string_setn_nocheck(j, s, len);
        free(s);
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++)
            fleet_json_printable(json_array_get(j, i));
    } else if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) fleet_json_printable(v);
    }
}

int fleet_status_print(struct etcd *e, const char *prefix, bool is_json)
{
    json_t *view = NULL;
    char err[512];
    if (fleet_view_read(e, prefix, &view, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tollgate fleet status: %s\n", err);
        return 1;
    }
    if (!is_json)
        fleet_json_printable(view);
    const json_t *head = json_object_get(view, "head");
    const json_t *nodes = json_object_get(view, "nodes");
    json_int_t head_rev = json_integer_value(json_object_get(head, "rev"));
    const char *head_err = json_string_value(json_object_get(head, "error"));
    const json_t *dup = json_object_get(view, "names_in_use_twice");
    bool split = json_array_size(nodes) == 0 || head_err != NULL || json_array_size(dup) > 0;
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        const json_t *n = json_array_get(nodes, i);
        const json_t *ne = json_object_get(n, "error");
        split = split || json_integer_value(json_object_get(n, "rev")) != head_rev ||
                json_is_object(ne);
    }
    if (is_json) {
        json_object_set_new(view, "converged", json_boolean(!split));
        json_dumpf(view, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(view);
        return split ? 1 : 0;
    }
    printf("fleet %s: revision %" JSON_INTEGER_FORMAT " (sha256 %.12s, by %s), %zu node%s%s\n",
           prefix, head_rev, str_or(head, "sha256", ""), str_or(head, "by", ""),
           json_array_size(nodes), json_array_size(nodes) == 1 ? "" : "s",
           split ? ", NOT converged" : ", converged");
    if (head_err != NULL)
        printf("the head does not parse: %s\n", head_err);
    printf("%-20s %-9s %-9s %-8s %s\n", "NODE", "REVISION", "SOURCE", "TICKETS", "LAST ERROR");
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        const json_t *n = json_array_get(nodes, i);
        const json_t *ne = json_object_get(n, "error");
        char last[700] = "-";
        if (json_is_object(ne))
            snprintf(last, sizeof(last), "revision %" JSON_INTEGER_FORMAT ": %.600s",
                     json_integer_value(json_object_get(ne, "rev")), str_or(ne, "message", "?"));
        printf("%-20.64s %-9" JSON_INTEGER_FORMAT " %-9.9s %-8s %s\n", str_or(n, "node", "?"),
               json_integer_value(json_object_get(n, "rev")), str_or(n, "source", "-"),
               json_is_true(json_object_get(n, "ticket_leader")) ? "leader" : "-", last);
    }
    for (size_t i = 0; i < json_array_size(dup); i++)
        printf("node name %s is used by more than one node: one of them is not shown\n",
               json_string_value(json_array_get(dup, i)));
    json_int_t bad = json_integer_value(json_object_get(view, "unreadable"));
    if (bad > 0)
        printf("(%" JSON_INTEGER_FORMAT " node entries could not be read)\n", bad);
    print_targets(nodes);
    json_decref(view);
    return split ? 1 : 0;
}
