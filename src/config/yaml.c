/* libfyaml events to a small tree that keeps the position of every node. */
#include "config/internal.h"

#include <stdlib.h>
#include <string.h>

#include <libfyaml.h>

/* Nesting well beyond any sensible config; bounds the build stack. */
#define YAML_MAX_DEPTH 64
/* Bounds memory for hostile input; a large real config has a few thousand. */
#define YAML_MAX_NODES 200000

struct ybuild {
    struct ydoc *doc;
    const char *text;
    size_t len;
    const char *file;
    struct diag *d;
    struct ynode *stack[YAML_MAX_DEPTH];
    size_t depth;
    bool is_failed; /* stop building: out of memory or a limit */
};

static void ybuild_error(struct ybuild *b, int line, int col, const char *msg, const char *arg)
{
    diag_add(b->d, DIAG_ERROR, b->file, line, col, NULL, "%s%s", msg, arg ? arg : "");
}

/* 1-based position of an event; falls back to the enclosing collection
 * (libfyaml gives no mark for empty scalars). */
static void ybuild_pos(struct ybuild *b, struct fy_event *ev, int *line, int *col)
{
    const struct fy_mark *m = fy_event_start_mark(ev);
    if (m != NULL && m->line >= 0 && m->column >= 0) {
        *line = m->line + 1;
        *col = m->column + 1;
        /* A quoted scalar's mark is on its first character: point at the
         * opening quote, where the reader sees the value start. */
        if (ev->type == FYET_SCALAR && m->column > 0 && m->input_pos > 0 &&
            m->input_pos <= b->len) {
            char q = b->text[m->input_pos - 1];
            enum fy_scalar_style style = fy_token_scalar_style(ev->scalar.value);
            if ((style == FYSS_SINGLE_QUOTED && q == '\'') ||
                (style == FYSS_DOUBLE_QUOTED && q == '"'))
                (*col)--;
        }
        return;
    }
    if (b->depth > 0) {
        *line = b->stack[b->depth - 1]->line;
        *col = b->stack[b->depth - 1]->col;
        return;
    }
    *line = 1;
    *col = 1;
}

static struct ynode *ybuild_node(struct ybuild *b, enum ynode_kind kind, struct fy_event *ev)
{
    if (b->doc->n_nodes >= YAML_MAX_NODES) {
        ybuild_error(b, 0, 0, "the document is too large (more than 200000 nodes)", NULL);
        b->is_failed = true;
        return NULL;
    }
    struct ynode *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        ybuild_error(b, 0, 0, "out of memory", NULL);
        b->is_failed = true;
        return NULL;
    }
    n->kind = kind;
    ybuild_pos(b, ev, &n->line, &n->col);
    n->all_next = b->doc->all;
    b->doc->all = n;
    b->doc->n_nodes++;
    return n;
}

static bool ybuild_grow(void **v, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 4;
    void *nv = realloc(*v, ncap * size);
    if (nv == NULL)
        return false;
    *v = nv;
    *cap = ncap;
    return true;
}

/* Adds a finished (scalar) or just opened (collection) node to its parent. */
static void ybuild_attach(struct ybuild *b, struct ynode *n)
{
    if (b->depth == 0) {
        if (b->doc->root == NULL)
            b->doc->root = n;
        return;
    }
    struct ynode *p = b->stack[b->depth - 1];
    if (p->kind == YN_SEQ) {
        if (!ybuild_grow((void **)&p->items, &p->cap, p->n, sizeof(*p->items))) {
            ybuild_error(b, n->line, n->col, "out of memory", NULL);
            b->is_failed = true;
            return;
        }
        p->items[p->n++] = n;
        return;
    }
    if (p->pending_key == NULL) {
        p->pending_key = n;
        return;
    }
    if (!ybuild_grow((void **)&p->pairs, &p->cap, p->n, sizeof(*p->pairs))) {
        ybuild_error(b, n->line, n->col, "out of memory", NULL);
        b->is_failed = true;
        return;
    }
    struct ynode *key = p->pending_key;
    p->pending_key = NULL;
    if (key->kind != YN_SCALAR) {
        if (key->kind != YN_BAD)
            ybuild_error(b, key->line, key->col, "mapping keys must be non-empty strings", NULL);
        key = NULL;
    }
    p->pairs[p->n++] = (struct ypair){.key = key, .val = n, .first = NULL};
}

static int ypair_cmp(const void *a, const void *b)
{
    const struct ypair *const *pa = a, *const *pb = b;
    int r = strcmp((*pa)->key->str, (*pb)->key->str);
    if (r != 0)
        return r;
    return *pa < *pb ? -1 : (*pa > *pb ? 1 : 0);
}

/* Marks each repeated key with the pair that came first. */
static void ybuild_mark_duplicates(struct ybuild *b, struct ynode *map)
{
    if (map->n < 2)
        return;
    const struct ypair **v = calloc(map->n, sizeof(*v));
    if (v == NULL) {
        ybuild_error(b, map->line, map->col, "out of memory", NULL);
        b->is_failed = true;
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < map->n; i++) {
        if (map->pairs[i].key != NULL)
            v[n++] = &map->pairs[i];
    }
    qsort(v, n, sizeof(*v), ypair_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(v[i]->key->str, v[i - 1]->key->str) != 0)
            continue;
        const struct ypair *first = v[i - 1]->first ? v[i - 1]->first : v[i - 1];
        map->pairs[v[i] - map->pairs].first = first;
    }
    free(v);
}

static bool yscalar_is_null(struct fy_token *tok, const char *s, size_t len)
{
    if (fy_token_scalar_style(tok) != FYSS_PLAIN)
        return false;
    return len == 0 || (len == 1 && s[0] == '~') ||
           (len == 4 &&
            (memcmp(s, "null", 4) == 0 || memcmp(s, "Null", 4) == 0 || memcmp(s, "NULL", 4) == 0));
}

static void ybuild_scalar(struct ybuild *b, struct fy_event *ev)
{
    struct fy_token *tok = ev->scalar.value;
    size_t len = 0;
    const char *s = tok ? fy_token_get_text(tok, &len) : NULL;
    if (s == NULL)
        len = 0;
    bool is_null = tok == NULL || yscalar_is_null(tok, s ? s : "", len);
    struct ynode *n = ybuild_node(b, is_null ? YN_NULL : YN_SCALAR, ev);
    if (n == NULL)
        return;
    char *expanded = NULL;
    if (!is_null && fy_token_scalar_style(tok) != FYSS_SINGLE_QUOTED) {
        char err[256];
        size_t n_expanded = 0;
        if (cfg_expand_env(s, len, &expanded, &n_expanded, err, sizeof(err)) != TG_OK) {
            ybuild_error(b, n->line, n->col, err, NULL);
            len = 0;
            n->kind = YN_BAD; /* reported: not also "must not be empty" */
        } else if (expanded != NULL) {
            s = expanded;
            len = n_expanded;
        }
    }
    if (!is_null) {
        n->str = malloc(len + 1);
        if (n->str == NULL) {
            free(expanded);
            ybuild_error(b, n->line, n->col, "out of memory", NULL);
            b->is_failed = true;
            return;
        }
        if (len > 0)
            memcpy(n->str, s, len);
        n->str[len] = '\0';
        n->len = len;
        n->has_nul = memchr(n->str, '\0', len) != NULL;
    }
    free(expanded);
    ybuild_attach(b, n);
}

static void ybuild_open(struct ybuild *b, struct fy_event *ev, enum ynode_kind kind)
{
    if (b->depth == YAML_MAX_DEPTH) {
        int line, col;
        ybuild_pos(b, ev, &line, &col);
        ybuild_error(b, line, col, "nesting is too deep (more than 64 levels)", NULL);
        b->is_failed = true;
        return;
    }
    struct ynode *n = ybuild_node(b, kind, ev);
    if (n == NULL)
        return;
    ybuild_attach(b, n);
    b->stack[b->depth++] = n;
}

static void ybuild_close(struct ybuild *b)
{
    if (b->depth == 0)
        return;
    struct ynode *n = b->stack[--b->depth];
    if (n->kind == YN_MAP)
        ybuild_mark_duplicates(b, n);
}

/* Moves line/col to the start of tok when libfyaml knows it, including
 * the indicator (libfyaml marks anchors and aliases after '&' or '*'). */
static void ybuild_token_pos(struct ybuild *b, struct fy_token *tok, int *line, int *col)
{
    const struct fy_mark *m = fy_token_start_mark(tok);
    if (m == NULL || m->line < 0 || m->column < 0)
        return;
    *line = m->line + 1;
    *col = m->column + 1;
    if (m->column > 0 && m->input_pos > 0 && m->input_pos <= b->len &&
        (b->text[m->input_pos - 1] == '&' || b->text[m->input_pos - 1] == '*'))
        (*col)--;
}

/* Refuses anchors and tags: aliases could multiply the work of the checks
 * (one alias per listener of a list of aliases ...), and tags mean nothing
 * to this schema. */
static void ybuild_refuse_props(struct ybuild *b, struct fy_event *ev, struct fy_token *anchor,
                                struct fy_token *tag)
{
    int line, col;
    if (anchor == NULL && tag == NULL)
        return;
    ybuild_pos(b, ev, &line, &col);
    if (anchor != NULL) {
        ybuild_token_pos(b, anchor, &line, &col);
        ybuild_error(b, line, col, "anchors and aliases are not supported", NULL);
    }
    if (tag != NULL) {
        ybuild_token_pos(b, tag, &line, &col);
        ybuild_error(b, line, col, "tags are not supported", NULL);
    }
}

static void ybuild_event(struct ybuild *b, struct fy_event *ev, int *n_docs)
{
    int line, col;
    switch (ev->type) {
    case FYET_DOCUMENT_START:
        if (++*n_docs > 1) {
            ybuild_pos(b, ev, &line, &col);
            ybuild_error(b, line, col, "only one YAML document is allowed", NULL);
            b->is_failed = true;
        }
        break;
    case FYET_SCALAR:
        ybuild_refuse_props(b, ev, ev->scalar.anchor, ev->scalar.tag);
        ybuild_scalar(b, ev);
        break;
    case FYET_ALIAS: {
        ybuild_pos(b, ev, &line, &col);
        if (ev->alias.anchor != NULL)
            ybuild_token_pos(b, ev->alias.anchor, &line, &col);
        ybuild_error(b, line, col, "anchors and aliases are not supported", NULL);
        struct ynode *n = ybuild_node(b, YN_BAD, ev);
        if (n != NULL)
            ybuild_attach(b, n);
        break;
    }
    case FYET_MAPPING_START:
        ybuild_refuse_props(b, ev, ev->mapping_start.anchor, ev->mapping_start.tag);
        ybuild_open(b, ev, YN_MAP);
        break;
    case FYET_SEQUENCE_START:
        ybuild_refuse_props(b, ev, ev->sequence_start.anchor, ev->sequence_start.tag);
        ybuild_open(b, ev, YN_SEQ);
        break;
    case FYET_MAPPING_END:
    case FYET_SEQUENCE_END:
        ybuild_close(b);
        break;
    default:
        break;
    }
}

/* libfyaml must never write to stderr on its own: errors are collected
 * and turned into diagnostics below. */
static void ydiag_discard(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag;
    (void)user;
    (void)buf;
    (void)len;
}

static void ydiag_report(struct fy_diag *diag, const char *file, struct diag *d)
{
    void *iter = NULL;
    struct fy_diag_error *e;
    size_t n = 0;
    while ((e = fy_diag_errors_iterate(diag, &iter)) != NULL) {
        if (e->type < FYET_WARNING)
            continue;
        enum diag_level level = e->type >= FYET_ERROR ? DIAG_ERROR : DIAG_WARNING;
        diag_add(d, level, file, e->line > 0 ? e->line : 0, e->column > 0 ? e->column : 0, NULL,
                 "invalid YAML: %s", e->msg ? e->msg : "syntax error");
        if (level == DIAG_ERROR)
            n++;
    }
    if (n == 0)
        diag_add(d, DIAG_ERROR, file, 0, 0, NULL, "invalid YAML");
}

/* Length of the UTF-8 sequence at s (RFC 3629 §4: no overlongs, no
 * surrogates, at most U+10FFFF), or 0 when it is invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        lo = s[0] == 0xe0 ? 0xa0 : 0x80;
        hi = s[0] == 0xed ? 0x9f : 0xbf;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        lo = s[0] == 0xf0 ? 0x90 : 0x80;
        hi = s[0] == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    }
    return len;
}

/*
 * YAML text is printable Unicode (YAML 1.2 §5.1). Checked before libfyaml
 * sees it: libfyaml 0.7.12 loops forever on some invalid UTF-8 (found by
 * fuzzing: "%\xff"), and a NUL byte cannot be carried through C strings.
 */
static bool ycheck_text(const char *text, size_t len, const char *file, struct diag *d)
{
    const unsigned char *s = (const unsigned char *)text;
    int line = 1, col = 1;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_len(s + i, len - i);
        if (n == 0) {
            diag_add(d, DIAG_ERROR, file, line, col, NULL,
                     "invalid YAML: invalid UTF-8 byte 0x%02x", s[i]);
            return false;
        }
        if (n == 1 && (s[i] < 0x20 || s[i] == 0x7f) && s[i] != '\t' && s[i] != '\n' &&
            s[i] != '\r') {
            diag_add(d, DIAG_ERROR, file, line, col, NULL,
                     "invalid YAML: control character 0x%02x (write it as an escape in a "
                     "double-quoted string)",
                     s[i]);
            return false;
        }
        if (s[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
        i += n;
    }
    return true;
}

enum tg_status ydoc_parse(struct ydoc *doc, const char *file, const char *text, size_t len,
                          struct diag *d)
{
    enum tg_status st = TG_E_CONFIG;
    struct fy_diag *diag = NULL;
    struct fy_parser *parser = NULL;
    struct ybuild b = {.doc = doc, .text = text, .len = len, .file = file, .d = d};
    memset(doc, 0, sizeof(*doc));
    if (!ycheck_text(text, len, file, d))
        return TG_E_CONFIG;

    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = ydiag_discard;
    dcfg.colorize = false;
    diag = fy_diag_create(&dcfg);
    if (diag == NULL) {
        diag_add(d, DIAG_ERROR, file, 0, 0, NULL, "out of memory");
        goto out;
    }
    fy_diag_set_collect_errors(diag, true);

    struct fy_parse_cfg pcfg = {.flags = FYPCF_QUIET | FYPCF_JSON_NONE, .diag = diag};
    parser = fy_parser_create(&pcfg);
    if (parser == NULL || fy_parser_set_string(parser, text, len) != 0) {
        diag_add(d, DIAG_ERROR, file, 0, 0, NULL, "out of memory");
        goto out;
    }

    int n_docs = 0;
    struct fy_event *ev;
    while (!b.is_failed && (ev = fy_parser_parse(parser)) != NULL) {
        ybuild_event(&b, ev, &n_docs);
        fy_parser_event_free(parser, ev);
    }
    if (!b.is_failed && fy_parser_get_stream_error(parser)) {
        ydiag_report(diag, file, d);
        b.is_failed = true;
    }
    if (b.is_failed) {
        ydoc_fini(doc);
        goto out;
    }
    /* Refused constructs (already reported) still give a tree, so that the
     * schema checks run too. */
    st = TG_OK;
out:
    if (parser != NULL)
        fy_parser_destroy(parser);
    if (diag != NULL)
        fy_diag_destroy(diag);
    return st;
}

void ydoc_fini(struct ydoc *doc)
{
    struct ynode *n = doc->all;
    while (n != NULL) {
        struct ynode *next = n->all_next;
        free(n->str);
        free(n->pairs);
        free(n->items);
        free(n);
        n = next;
    }
    memset(doc, 0, sizeof(*doc));
}
