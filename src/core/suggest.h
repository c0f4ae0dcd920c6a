#ifndef TG_CORE_SUGGEST_H
#define TG_CORE_SUGGEST_H

#include <stddef.h>
#include <stdio.h>

/*
 * "Did you mean ...?" for the command line: the candidate closest to a word
 * that was not recognised.
 */

/* Longest word or candidate compared; longer ones never get a suggestion. */
#define SUGGEST_MAX_LEN 64

/*
 * Optimal string alignment distance (Damerau-Levenshtein where each substring
 * is edited once): insertions, deletions, substitutions and transpositions of
 * two adjacent bytes each cost 1. Returns SIZE_MAX when either string is
 * longer than SUGGEST_MAX_LEN. Pure; no allocation.
 */
size_t suggest_distance(const char *a, const char *b);

/*
 * The candidate closest to word, or NULL when none is close. Only the part of
 * word before a '=' counts ("--sin=x" is compared as "--sin"). Close means a
 * distance of at most 1 for words of up to 4 bytes and at most 2 for longer
 * ones (the smallest wins; on a tie, the first in cands); failing that, the
 * one candidate that starts with word when word has at least 2 bytes besides
 * leading dashes. Returns a pointer into cands (borrowed). Pure.
 */
const char *suggest_closest(const char *word, const char *const *cands, size_t n_cands);

/*
 * Writes "PROG: unknown WHAT 'WORD'" and, when suggest_closest finds one,
 * "; did you mean 'CANDIDATE'?", then a newline, to out.
 */
void suggest_print_unknown(FILE *out, const char *prog, const char *what, const char *word,
                           const char *const *cands, size_t n_cands);

/*
 * An argument that "tollgate CMD" (e.g. "cert verify") does not take: writes
 * "tollgate CMD: unknown option 'ARG'" with the closest of opts (as
 * suggest_print_unknown) when arg starts with '-', else "tollgate CMD:
 * unexpected argument 'ARG'", then where the help is. Returns 2, the exit
 * code of a usage error.
 */
int suggest_usage_error(FILE *out, const char *cmd, const char *arg, const char *const *opts,
                        size_t n_opts);

#endif
