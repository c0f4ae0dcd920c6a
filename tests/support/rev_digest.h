#ifndef TG_TESTS_REV_DIGEST_H
#define TG_TESTS_REV_DIGEST_H

#include <jansson.h>
#include <stdbool.h>

/* The digest src/fleet/rev.c gives the contents of the revision document
 * j, written apart from it from the format's description. False when a
 * field it covers has the wrong type. */
bool rev_digest_json(const json_t *j, char hex[65]);

#endif
