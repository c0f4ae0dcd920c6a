#ifndef TG_CORE_STATUS_H
#define TG_CORE_STATUS_H

/* The one status type. TG_OK is 0; failures are negative, grouped by kind. */
enum tg_status {
    TG_OK = 0,
    TG_E_AGAIN = -1,    /* would block; try again when the fd is ready */
    TG_E_CLOSED = -2,   /* peer closed (EOF or TLS close_notify) */
    TG_E_PROTO = -3,    /* peer sent something we refuse */
    TG_E_CONFIG = -4,   /* configuration or file content is invalid */
    TG_E_NOMEM = -5,    /* allocation failed */
    TG_E_INTERNAL = -6, /* system call failed or invariant broken */
    TG_E_TIMEOUT = -7,  /* a deadline passed */
    TG_E_RESET = -8,    /* peer reset the connection (ECONNRESET) */
};

#define TG_MUST_USE          __attribute__((warn_unused_result))
#define TG_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define TG_ARRAY_LEN(a)      (sizeof(a) / sizeof((a)[0]))

#endif
