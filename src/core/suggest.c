#include "core/suggest.h"

#include <stdint.h>
#include <string.h>

static size_t min3(size_t a, size_t b, size_t c)
{
    size_t m = a < b ? a : b;
    return m < c ? m : c;
}

/* Distance between a[0..la) and b[0..lb); both lengths at most SUGGEST_MAX_LEN.
 * Three rows suffice: a transposition looks two rows back. */
static size_t osa(const char *a, size_t la, const char *b, size_t lb)
{
    size_t rows[3][SUGGEST_MAX_LEN + 1];
    size_t *prev2 = rows[0];
    size_t *prev = rows[1];
    size_t *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            cur[j] = min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < cur[j])
                cur[j] = prev2[j - 2] + 1;
        }
        size_t *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

size_t suggest_distance(const char *a, const char *b)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    if (la > SUGGEST_MAX_LEN || lb > SUGGEST_MAX_LEN)
        return SIZE_MAX;
    return osa(a, la, b, lb);
}

const char *suggest_closest(const char *word, const char *const *cands, size_t n_cands)
{
    const char *eq = strchr(word, '=');
    size_t lw = eq != NULL ? (size_t)(eq - word) : strlen(word);
    if (lw == 0 || lw > SUGGEST_MAX_LEN)
        return NULL;
    size_t limit = lw <= 4 ? 1 : 2;
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < n_cands; i++) {
        size_t lc = strlen(cands[i]);
        if (lc > SUGGEST_MAX_LEN)
            continue;
        size_t d = osa(word, lw, cands[i], lc);
        if (d <= limit && d < best_d) {
            best = cands[i];
            best_d = d;
        }
    }
    if (best != NULL)
        return best;
    size_t dashes = 0;
    while (dashes < lw && word[dashes] == '-')
        dashes++;
    if (lw - dashes < 2)
        return NULL;
    const char *prefix_of = NULL;
    for (size_t i = 0; i < n_cands; i++) {
        if (strncmp(cands[i], word, lw) != 0)
            continue;
        if (prefix_of != NULL)
            return NULL; /* ambiguous: "--c" could be --ca, --cert or --crl */
        prefix_of = cands[i];
    }
    return prefix_of;
}

void suggest_print_unknown(FILE *out, const char *prog, const char *what, const char *word,
                           const char *const *cands, size_t n_cands)
{
    const char *s = suggest_closest(word, cands, n_cands);
    if (s != NULL)
        fprintf(out, "%s: unknown %s '%s'; did you mean '%s'?\n", prog, what, word, s);
    else
        fprintf(out, "%s: unknown %s '%s'\n", prog, what, word);
}

int suggest_usage_error(FILE *out, const char *cmd, const char *arg, const char *const *opts,
                        size_t n_opts)
{
    char prog[80];
    snprintf(prog, sizeof(prog), "tollgate %s", cmd);
    if (arg[0] == '-' && arg[1] != '\0')
        suggest_print_unknown(out, prog, "option", arg, opts, n_opts);
    else
        fprintf(out, "%s: unexpected argument '%s'\n", prog, arg);
    fprintf(out, "see \"tollgate %s --help\"\n", cmd);
    return 2;
}
