#ifndef TG_CORE_LOG_H
#define TG_CORE_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

/*
 * The event log: one line per event on stderr,
 * "2026-11-22T07:40:00.123Z info pid=42 <message>", where the message is
 * key=value fields. The access log is separate (JSON lines, see log_access_*).
 */
enum log_level { LOG_LEVEL_ERR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);

void log_msg(enum log_level level, const char *fmt, ...) TG_PRINTF(2, 3);

/* This process's id without a system call each time: cached, and reset in
 * a child by a fork handler. For log fields and per-process slots on hot
 * paths. */
int tg_pid(void);

#define log_err(...)  log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_LEVEL_DEBUG)                                                    \
            log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                                 \
    } while (0)

/* Opens the access log: "stdout", "off" or a file path (appended, 0640).
 * Replaces the one open before. Returns TG_E_INTERNAL if the file cannot be
 * opened; the previous destination stays in use then. */
TG_MUST_USE enum tg_status log_access_open(const char *dest);

/* Reopens the current access log file (after rotation; SIGUSR1). */
void log_access_reopen(void);

/* True when access lines are being written somewhere. */
bool log_access_enabled(void);

/* Writes one line (a newline is appended). A failed write is reported once
 * in the event log and never stops the caller. */
void log_access_write(const char *line, size_t len);

/* Length of the well-formed multi-byte UTF-8 sequence at p (at most n
 * bytes), or 0 (for ASCII too): RFC 3629 §4, so no overlong forms, no
 * surrogates, nothing past U+10FFFF. */
size_t log_utf8_len(const unsigned char *p, size_t n);

/* Escapes s into dst as the inside of a JSON string (no quotes), truncating
 * to fit between escapes and whole UTF-8 characters; dst is always
 * terminated. '"' and '\\' are backslashed; C0 and C1 controls, 0x7f,
 * U+2028 and U+2029 are \u escapes (\u0085, \u2028); other well-formed UTF-8 (RFC 3629) is
 * kept; any other byte is \ufffd. Returns the length written. */
size_t log_json_escape(char *dst, size_t dst_len, const char *s);

/*
 * Writes src[0..src_len) (any bytes, NUL included) into dst as one value of
 * a key=value event-log field, terminated. A value of printable ASCII
 * without space, '"', '\\' and '=' is written as it is. Any other value, and
 * the empty one, is written in double quotes with '"' and '\\' backslashed
 * and every byte below 0x20 or from 0x7f up as \xNN. A value that does not
 * fit is cut between escapes and ends in the marker \..." (which escaping
 * never produces). dst_len below LOG_KV_MIN gives "". Returns the length
 * written. Every value a peer chose goes through this before it is logged.
 */
size_t log_kv_escape(char *dst, size_t dst_len, const char *src, size_t src_len);

#define LOG_KV_MIN 8
/* Room for a logged peer value: enough for a host name, a subject or a
 * request path of ordinary size; longer ones are cut with the marker. */
#define LOG_KV_MAX 512

/* log_kv_escape of the NUL-terminated s (NULL as ""); returns dst, so that
 * it can stand as a printf argument. */
const char *log_kv(char *dst, size_t dst_len, const char *s);

#endif
