#ifndef TG_CONFIG_INTERNAL_H
#define TG_CONFIG_INTERNAL_H

/*
 * Private to src/config: the YAML tree (yaml.c), the load context with its
 * typed getters (parse.c, value.c), the section walkers (parse_*.c) and the
 * meaning checks (check.c). Nothing outside src/config includes this.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* ---- YAML tree (yaml.c) ---- */

enum ynode_kind {
    YN_NULL,   /* empty, "~" or "null" (plain) */
    YN_SCALAR, /* any other scalar, quoted or not */
    YN_MAP,
    YN_SEQ,
    YN_BAD, /* already reported (alias); walkers skip it silently */
};

struct ypair {
    struct ynode *key; /* a scalar; NULL when the key was refused */
    struct ynode *val;
    const struct ypair *first; /* non-NULL: a duplicate of this earlier pair */
};

struct ynode {
    enum ynode_kind kind;
    int line;  /* 1-based */
    int col;   /* 1-based */
    char *str; /* YN_SCALAR: owned, NUL-terminated copy of the text */
    size_t len;
    bool has_nul;         /* the text holds a NUL byte ("\0" escape) */
    struct ypair *pairs;  /* YN_MAP: owned array */
    struct ynode **items; /* YN_SEQ: owned array of borrowed nodes */
    size_t n, cap;
    struct ynode *pending_key; /* YN_MAP while building */
    struct ynode *all_next;    /* chain of every node, owned by the ydoc */
};

/* Owns every node of one parsed document. */
struct ydoc {
    struct ynode *root; /* NULL for an empty document */
    struct ynode *all;
    size_t n_nodes;
};

/*
 * Parses text as exactly one YAML document into doc. Syntax errors are
 * reported into d with libfyaml's message and position (nothing is printed)
 * and return TG_E_CONFIG with doc empty. Constructs we refuse (aliases,
 * tags, complex keys, a second document) are reported too but still give a
 * tree, so that the schema checks can run. Free with ydoc_fini.
 */
TG_MUST_USE enum tg_status ydoc_parse(struct ydoc *doc, const char *file, const char *text,
                                      size_t len, struct diag *d);
void ydoc_fini(struct ydoc *doc);

/* ---- load context (parse.c) ---- */

#define CFG_PATH_MAX 256

/* A value being walked: its node, dotted key path and the position of the
 * key (or of the item, in a sequence). */
struct cfg_val {
    const struct ynode *node;
    const char *key; /* the mapping key (borrowed); NULL for sequence items and the root */
    char path[CFG_PATH_MAX];
    int line, col;
};

/* Position of one struct field (is_obj false) or struct (is_obj true) as
 * written, so that check.c can report at the right key. */
struct cfg_rec {
    const void *addr;
    bool is_obj;
    size_t seq;  /* order of recording: the last record of a field wins */
    bool is_bad; /* the key was given with a value that was refused */
    char *path;  /* owned */
    int line, col;
};

struct cfg_ctx {
    struct config *cfg;
    struct diag *d;
    const char *file;                  /* name used in diagnostics */
    const char *base_dir;              /* NULL: relative paths stay relative */
    const struct config_path_map *map; /* NULL: paths are used as resolved */
    struct cfg_rec *recs;              /* owned array */
    size_t n_recs, cap_recs;
    bool is_sorted;
    bool is_oom;
};

void cfg_error(struct cfg_ctx *c, const struct cfg_val *v, const char *fmt, ...) TG_PRINTF(3, 4);
void cfg_oom(struct cfg_ctx *c);

/* Allocation helpers: on failure they report once and return NULL. */
void *cfg_calloc(struct cfg_ctx *c, size_t n, size_t size);
char *cfg_strdup(struct cfg_ctx *c, const char *s);

/* Remembers where a field or a struct was written (see struct cfg_rec). */
void cfg_record(struct cfg_ctx *c, const void *addr, bool is_obj, const struct cfg_val *v);

/* Records a key whose value was refused (already reported), so that checks
 * depending on it stay quiet instead of assuming the default. */
void cfg_record_bad(struct cfg_ctx *c, const void *addr, const struct cfg_val *v);

/* Looks a record up (check.c, after parsing); NULL when never written. */
const struct cfg_rec *cfg_rec_find(struct cfg_ctx *c, const void *addr, bool is_obj);

/* Error at a recorded field ("listeners[0].tls.client_ca: ..."). */
void cfg_error_at(struct cfg_ctx *c, const void *field, const char *fmt, ...) TG_PRINTF(3, 4);
void cfg_warn_at(struct cfg_ctx *c, const void *field, const char *fmt, ...) TG_PRINTF(3, 4);

/* Error about key sub of a recorded struct, at the struct's position
 * ("listeners[0].target_group: ..." at listeners[0]). sub may be NULL. */
void cfg_error_in(struct cfg_ctx *c, const void *obj, const char *sub, const char *fmt, ...)
    TG_PRINTF(4, 5);

/* ---- walking the tree (value.c) ---- */

/* Sets v to the root of the document (path ""). */
void cfg_val_root(struct cfg_val *v, const struct ynode *root);

/* True when v is a mapping (or null, read as an empty one); reports otherwise. */
bool cfg_is_map(struct cfg_ctx *c, const struct cfg_val *v);
/* True when v is a sequence (or null, read as an empty one); reports otherwise. */
bool cfg_is_seq(struct cfg_ctx *c, const struct cfg_val *v);

/* Number of entries cfg_map_next / cfg_seq_next will give. */
size_t cfg_count(const struct cfg_val *v);

/* Iterates a mapping checked with cfg_is_map: fills out with the next pair
 * (path "parent.key"), skipping refused keys and reporting duplicates.
 * Start with *i = 0; returns false at the end. */
bool cfg_map_next(struct cfg_ctx *c, const struct cfg_val *map, size_t *i, struct cfg_val *out);

/* Iterates a sequence checked with cfg_is_seq (path "parent[i]"). */
bool cfg_seq_next(struct cfg_ctx *c, const struct cfg_val *seq, size_t *i, struct cfg_val *out);

/* Index of kv's key in keys, or -1 after reporting an unknown key. */
int cfg_key(struct cfg_ctx *c, const struct cfg_val *kv, const char *const *keys, size_t n);

/* Typed getters: each checks the value, reports what is wrong and what is
 * accepted, and records the field. On failure the field keeps its value. */
bool cfg_get_str(struct cfg_ctx *c, const struct cfg_val *v, char **out);
bool cfg_get_path(struct cfg_ctx *c, const struct cfg_val *v, char **out);
bool cfg_get_name(struct cfg_ctx *c, const struct cfg_val *v, char **out);
bool cfg_get_bool(struct cfg_ctx *c, const struct cfg_val *v, bool *out);
bool cfg_get_uint(struct cfg_ctx *c, const struct cfg_val *v, unsigned lo, unsigned hi,
                  unsigned *out);
bool cfg_get_duration(struct cfg_ctx *c, const struct cfg_val *v, uint64_t *out);
bool cfg_get_size(struct cfg_ctx *c, const struct cfg_val *v, uint64_t *out);

/* One of names[0..n); returns its index, or -1 after reporting. field is
 * recorded (the caller stores the index into its enum). */
int cfg_get_enum(struct cfg_ctx *c, const struct cfg_val *v, const char *const *names, size_t n,
                 const void *field);

/* The name of a named entry (certificates.NAME): the key of kv, checked
 * like cfg_get_name (kept even when invalid). NULL only when out of memory. */
char *cfg_entry_name(struct cfg_ctx *c, const struct cfg_val *kv);

static inline struct cfg_pos cfg_pos_of(const struct cfg_val *v)
{
    return (struct cfg_pos){.line = v->line, .col = v->col};
}

/* True when s is a valid entry name: [A-Za-z0-9_.-], 1..64 characters. */
bool cfg_name_ok(const char *s);

/* True when s is an RFC 9110 token (header names, methods, cookie names). */
bool cfg_is_token(const char *s);

/* Resolves a relative path against c->base_dir; NULL on allocation failure. */
char *cfg_resolve_path(struct cfg_ctx *c, const char *p);

/* ---- sections (parse_*.c) ---- */

void cfg_parse_certificates(struct cfg_ctx *c, const struct cfg_val *v);
void cfg_parse_client_cas(struct cfg_ctx *c, const struct cfg_val *v);
void cfg_parse_listener_tls(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_tls *t);
/* An allow-list matcher ({ field: pattern, ... }) into r (rules' client:
 * and allow: items). */
void cfg_parse_allow_rule(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_allow_rule *r);
void cfg_parse_target_groups(struct cfg_ctx *c, const struct cfg_val *v);
void cfg_parse_listeners(struct cfg_ctx *c, const struct cfg_val *v);
void cfg_parse_fleet(struct cfg_ctx *c, const struct cfg_val *v);

/* Frees what the structs own (free.c). */
void cfg_tls_fini(struct cfg_tls *t);
void cfg_rule_fini(struct cfg_rule *r);
void cfg_target_group_fini(struct cfg_target_group *g);

/* ---- meaning (check.c) ---- */

/* Checks references, combinations, addresses and files; resolves names to
 * pointers and addresses into struct net_addr. */
void cfg_check(struct cfg_ctx *c);

/* For the checks of other files: whether a field was written with a
 * value that was kept (set) or refused (bad); a name resolved to its
 * entry, with an error at the field when there is none. */
bool cfg_was_set(struct cfg_ctx *c, const void *field);
bool cfg_was_bad(struct cfg_ctx *c, const void *field);
struct cfg_certificate *cfg_ref_certificate(struct cfg_ctx *c, char *const *field);
struct cfg_client_ca *cfg_ref_client_ca(struct cfg_ctx *c, char *const *field);

/* The sites of a listener's tls block (check_sites.c): fills what each
 * sni entry takes from the listener, and checks names, modes and
 * allow-lists. After the listener's own tls settings are checked. */
void cfg_check_sites(struct cfg_ctx *c, struct cfg_listener *l);

/*
 * Expands ${NAME} and ${NAME:-VALUE} (VALUE when NAME is unset or empty)
 * in the scalar s[0..len) from the environment; $${ is a literal ${.
 * *out is NULL when there is nothing to expand, else a heap string of
 * *out_len bytes. TG_E_CONFIG with the reason in err for a malformed
 * reference, an unset NAME without a default, or a result over
 * CFG_ENV_VALUE_MAX bytes.
 */
#define CFG_ENV_NAME_MAX  64
#define CFG_ENV_VALUE_MAX 4096
TG_MUST_USE enum tg_status cfg_expand_env(const char *s, size_t len, char **out, size_t *out_len,
                                          char *err, size_t err_len);

#endif
