#ifndef TG_CORE_HISTORY_H
#define TG_CORE_HISTORY_H

/*
 * The trust history: the client certificates a listener accepted, kept in
 * the state directory so that `tollgate trust diff` can replay them against
 * a proposed trust. Workers write (src/proxy/history.c), the command reads
 * (src/pki/trust_diff.c); this is the format both agree on.
 *
 * STATE_DIR/trust-history/LISTENER.PID.jsonl, one file per worker process,
 * appended to, one JSON object a line:
 *   {"v":1,"listener":NAME,"site":FIRST_SNI_NAME_OR_"",
 *    "first":UNIX,"last":UNIX,"fingerprint":HEX,"subject":RFC4514,
 *    "serial":HEX,"chain":[BASE64_DER_LEAF, BASE64_DER_INTERMEDIATE...]}
 * A certificate is written when a worker first accepts it and again at
 * most once a day while it keeps coming back (its "last"); readers merge
 * the lines of every file by fingerprint and drop what is older than
 * trust_history.
 */
#define TG_HISTORY_DIR     "trust-history"
#define TG_HISTORY_VERSION 1
/* What one worker process keeps of one window: certificates remembered,
 * and the size its file may reach; past either it records no more (and
 * says so once). */
#define TG_HISTORY_MAX_CERTS 8192
#define TG_HISTORY_MAX_FILE  (16 * 1024 * 1024)
/* A certificate seen again is written again once this many seconds passed. */
#define TG_HISTORY_REFRESH_S (24 * 3600)

#endif
